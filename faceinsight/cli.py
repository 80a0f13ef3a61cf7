"""The ``faceinsight`` command.

``faceinsight fit|validate|test|predict -c configs/<preset>.yaml`` is a
``LightningCLI``: several ``-c`` files compose, dotted overrides work
(``--model.use_seg false``), ``--print_config`` shows the resolved YAML.
The model is any ``FaceModule`` class (``subclass_mode_model``): a ``model`` section without ``class_path``, as the
presets write it, is ``FaceInsightModule``; ``--model SpecialistModule`` or ``-c configs/specialist.yaml`` trains the
specialist (``faceinsight.train.specialist``) with the same data, loss and metrics.
``fit`` also runs the test split on the best checkpoint unless ``--test_after_fit false``;
``predict`` writes one JSON line per test face, or per image of ``--data.predict_images <folder | list.txt>``
(``--predictions.output_file``; see ``faceinsight.tools.predict``).

Tools beside training:
``faceinsight synthface preview`` (a PNG grid of SynthFace samples),
``faceinsight rules audit <rules> --data <dataset>`` (rule violations in real labels),
``faceinsight segparser fit`` (train the U-Net face parser),
``faceinsight graph export <ckpt>`` (the correlation graph of a checkpoint as JSON),
``faceinsight ablate -c <preset> --seeds 3 [--sweep KEY=V1,V2]`` (the paper's module ablation or a sweep, see
``faceinsight.tools.ablate``),
``faceinsight qa export`` and ``faceinsight eval-text <answers.jsonl>`` (questions for any MLLM, and its free-text
answers scored: ``faceinsight.text.qa``, ``faceinsight.eval.text``),
``faceinsight pretrain clip|lm`` (small backbones pretrained on captions from labels: ``faceinsight.train.pretrain``),
``faceinsight describe --ckpt_path <ckpt>`` (each face in words, decoded and generated, and how often the generated
words contradict the model's answers: ``faceinsight.tools.describe``).
"""

from __future__ import annotations

import importlib
import itertools
import os
import sys
from typing import Any

import yaml
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from faceinsight.data.module import FaceDataModule
from faceinsight.tools.predict import PredictionWriter
from faceinsight.train.faceinsight_module import FaceInsightModule
from faceinsight.train.module import FaceModule
from faceinsight.train.specialist import SpecialistModule  # noqa: F401  (imported: `--model SpecialistModule` resolves)

DEFAULT_MODEL = f"{FaceInsightModule.__module__}.{FaceInsightModule.__name__}"


def uses_segmaps(model: Namespace) -> bool:
    """Whether the model reads parsing maps: FaceInsight's ``use_seg``; a model without that argument reads none."""
    return bool(model.init_args.get("use_seg", False))


class FaceInsightParser(LightningArgumentParser):
    """Dumps the default model's section as its plain init arguments, the way presets write it: ``--print_config``,
    the run's ``config.yaml`` and checkpoints' hyper-parameters read as before the model class became switchable.
    Another class keeps its ``class_path``."""

    def dump(self, namespace: Namespace, format: str = "parser_mode", **kwargs: Any) -> str:
        text = super().dump(namespace, format, **kwargs)
        if format not in ("parser_mode", "yaml") or self.parser_mode != "yaml" or kwargs.get("with_comments"):
            return text
        config = yaml.safe_load(text)
        section = config.get(namespace.get("subcommand"), config)
        model = section.get("model")
        if not isinstance(model, dict) or model.get("class_path") != DEFAULT_MODEL:
            return text
        section["model"] = {**model.get("init_args", {}), **model.get("dict_kwargs", {})}
        header = "".join(itertools.takewhile(lambda line: line.startswith("#"), text.splitlines(keepends=True)))
        return header + yaml.safe_dump(config, default_flow_style=False, allow_unicode=True, sort_keys=False)


class FaceInsightCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults({"model": {"class_path": DEFAULT_MODEL}})
        parser.link_arguments("data.characteristics", "model.init_args.characteristics", apply_on="instantiate")
        parser.link_arguments("model", "data.with_segmaps", compute_fn=uses_segmaps, apply_on="parse")
        parser.add_argument("--test_after_fit", type=bool, default=True, help="run the test split after fit")
        parser.add_lightning_class_args(PredictionWriter, "predictions")  # what `predict` writes, and where

    def after_fit(self) -> None:
        if not self.config[self.subcommand].get("test_after_fit", True):
            return
        checkpoint = self.trainer.checkpoint_callback
        ckpt_path = "best" if checkpoint is not None and checkpoint.best_model_path else None
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt_path)


def _lightning(argv: list[str] | None) -> FaceInsightCLI:
    return FaceInsightCLI(
        FaceModule,
        FaceDataModule,
        subclass_mode_model=True,
        args=argv,  # None: read sys.argv
        save_config_kwargs={"overwrite": True},
        parser_class=FaceInsightParser,
    )


# Commands beside training: a command, or a group of commands, -> "module:function" taking the remaining argv.
TOOLS: dict[str, str | dict[str, str]] = {
    "synthface": {"preview": "faceinsight.data.synthface.preview:main"},
    "rules": {"audit": "faceinsight.logic.audit:main"},
    "segparser": {"fit": "faceinsight.data.segmentation.unet:main"},
    "graph": {"export": "faceinsight.tools.graph:export_main"},
    "ablate": "faceinsight.tools.ablate:main",
    "qa": {"export": "faceinsight.text.qa:export_main"},
    "eval-text": "faceinsight.eval.text:main",
    "describe": "faceinsight.tools.describe:main",
    "pretrain": {
        "all": "faceinsight.tools.pretrain_all:main",
        "clip": "faceinsight.train.pretrain.clip:main",
        "seg": "faceinsight.train.pretrain.seg:main",
        "lm": "faceinsight.train.pretrain.lm:main",
    },
}


def _run_tool(name: str, words: list[str]) -> None:
    target = TOOLS[name]
    if isinstance(target, dict):
        if not words or words[0] not in target:
            sys.exit(f"usage: faceinsight {name} {{{','.join(target)}}} ...")
        target, words = target[words[0]], words[1:]
    module, function = target.split(":")
    getattr(importlib.import_module(module), function)(words)


def run(argv: list[str] | None = None) -> FaceInsightCLI | None:
    """Run one ``faceinsight`` command; returns the LightningCLI (model, trainer, data) for training commands."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub is reachable: never try one
    words = sys.argv[1:] if argv is None else argv
    if words and words[0] in TOOLS:
        _run_tool(words[0], words[1:])
        return None
    return _lightning(argv)


def main() -> None:
    """Entry point of the ``faceinsight`` console script."""
    run()


if __name__ == "__main__":
    main()
