"""Shared test set-up: offline hubs, a fixed seed, the location of the shared real data, and spawned process groups."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

SHARED_DATA = Path(os.environ.get("FACEINSIGHT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def shared_data() -> Path:
    """The real face data in ../shared/data; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real face data not found at {SHARED_DATA} (set FACEINSIGHT_DATA)")
    return SHARED_DATA


@pytest.fixture
def run_processes() -> Callable[[Callable[[int, str], None], Path], None]:
    """``run(target, folder)``: ``target(rank, folder)`` in 2 spawned processes (forking a process whose OpenMP
    threads are running, as after earlier tests, can deadlock the child), each of which must exit with 0 within 120 s;
    one left waiting in a collective the other never joined is killed."""

    def run(target: Callable[[int, str], None], folder: Path) -> None:
        context = multiprocessing.get_context("spawn")
        workers = [context.Process(target=target, args=(rank, str(folder))) for rank in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=120)
        for w in workers:
            if w.is_alive():
                w.kill()
        assert [w.exitcode for w in workers] == [0, 0]

    return run
