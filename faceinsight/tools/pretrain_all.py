"""``faceinsight pretrain all``: the paper's regime in one command. Pretrain every backbone that is not already
pretrained with the same settings (CLIP, segmentation encoder, LM, in that order), then optionally train FaceInsight
on top of them with frozen backbones (``--fit <preset> [<preset> ...]``), and report each stage's wall time.

    faceinsight pretrain all -c configs/pretrain_celebahq64.yaml \\
        --fit configs/celebahq64.yaml configs/frozen_celebahq64.yaml

A stage is skipped when its output folder holds a ``pretraining.json`` written with exactly the settings it would
run now (same overlays, same defaults), so a second run only trains; ``--force`` re-runs every stage.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceinsight.train.pretrain import common

STAGES = ("clip", "seg", "lm")
CONFIG_CLASSES = {
    "clip": "faceinsight.train.pretrain.clip:ClipPretraining",
    "seg": "faceinsight.train.pretrain.seg:SegPretraining",
    "lm": "faceinsight.train.pretrain.lm:LMPretraining",
}


@dataclass
class StageResult:
    stage: str
    out: str
    reused: bool
    seconds: float  # this run's wall time (a reused stage: the time to check it)
    trained_seconds: float | None  # the wall time of the run that produced the folder, from its report


def _load(stage: str) -> tuple[Any, type]:
    """The stage's module and its config dataclass."""
    module_name, class_name = CONFIG_CLASSES[stage].split(":")
    module = importlib.import_module(module_name)
    return module, getattr(module, class_name)


def stage_config(stage: str, overlays: list[str]) -> Any:
    """The config the stage's own command would build from these ``-c`` overlays."""
    _, config_class = _load(stage)
    argv = [arg for path in overlays for arg in ("-c", path)]
    return common.parse(config_class, argv, f"faceinsight pretrain {stage}", "", stage)


def finished(out: Path, config: Any) -> dict[str, Any] | None:
    """The report of a finished run in ``out`` with exactly ``config``'s settings, else None."""
    path = out / common.REPORT
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    wanted, saved = common.json_ready(config), dict(report.get("config") or {})
    wanted.pop("out"), saved.pop("out", None)  # the folder itself is where the report was found
    return report if saved == wanted else None


def run_stage(stage: str, overlays: list[str], force: bool = False) -> StageResult:
    """Run one pretraining stage unless an identical finished run exists."""
    started = time.perf_counter()
    module, _ = _load(stage)
    config = stage_config(stage, overlays)
    out = Path(config.out) if config.out else common.default_out(stage, module_data(config))
    previous = None if force else finished(out, config)
    if previous is not None:
        logging.info("pretrain %s: reusing %s (same settings)", stage, out)
        return StageResult(stage, str(out), True, time.perf_counter() - started, previous["seconds"]["total"])
    logging.info("pretrain %s: training into %s", stage, out)
    report = module.run(config)
    return StageResult(stage, str(out), False, time.perf_counter() - started, report["seconds"]["total"])


def module_data(config: Any) -> Any:
    """The data module a stage opens (only its dataset names are read, for the default output folder)."""
    return common.open_data(config.datasets, batch_size=1, roots=config.roots)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="faceinsight pretrain all", description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", action="append", default=[], help="overlay for every stage (several ok)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--force", action="store_true", help="re-run stages even when an identical run exists")
    parser.add_argument("--fit", nargs="+", metavar="PRESET", help="then `faceinsight fit -c` these presets")
    words = list(sys.argv[1:] if argv is None else argv)
    fit_args: list[str] = []
    if "--" in words:  # everything after `--` goes to `faceinsight fit`
        at = words.index("--")
        words, fit_args = words[:at], words[at + 1 :]
    args = parser.parse_args(words)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stages {unknown}; choose from {','.join(STAGES)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    results = [run_stage(stage, args.config, args.force) for stage in stages]
    fit_seconds = None
    if args.fit:
        from faceinsight.cli import run

        started = time.perf_counter()
        run(["fit", *[arg for path in args.fit for arg in ("-c", path)], *fit_args])
        fit_seconds = time.perf_counter() - started

    print(f"\n{'stage':<8}{'folder':<40}{'this run s':>12}{'pretraining s':>15}")
    for r in results:
        reused = " (reused)" if r.reused else ""
        print(f"{r.stage:<8}{r.out:<40}{r.seconds:>12.0f}{r.trained_seconds or 0:>15.0f}{reused}")
    total = sum(r.trained_seconds or 0 for r in results)
    line = f"pretraining wall time {total:.0f} s"
    if fit_seconds is not None:
        line += f"; fit {fit_seconds:.0f} s; regime total {total + fit_seconds:.0f} s"
    print(line)
