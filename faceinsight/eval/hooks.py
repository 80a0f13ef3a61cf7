"""Reading a model's intermediate outputs without changing its forward, for the diagnostics (docs/learning.md)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor, nn


@contextmanager
def caught_outputs(parts: dict[str, nn.Module]) -> Iterator[dict[str, Tensor]]:
    """Inside the block, the latest output of each module of ``parts``, by name (forward hooks, removed on exit)."""
    caught: dict[str, Tensor] = {}
    hooks = [
        module.register_forward_hook(lambda _m, _args, out, name=name: caught.__setitem__(name, out))
        for name, module in parts.items()
    ]
    try:
        yield caught
    finally:
        for hook in hooks:
            hook.remove()
