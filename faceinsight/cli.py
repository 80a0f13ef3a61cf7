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

Tools beside training: :data:`TOOLS`, one line each in ``faceinsight --help`` (docs/architecture.md).
"""

from __future__ import annotations

import importlib
import itertools
import os
import sys
from dataclasses import dataclass, field
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


def _lightning(argv: list[str] | None, run: bool = True) -> FaceInsightCLI:
    return FaceInsightCLI(
        FaceModule,
        FaceDataModule,
        subclass_mode_model=True,
        args=argv,  # None: read sys.argv
        run=run,
        save_config_kwargs={"overwrite": True},
        parser_class=FaceInsightParser,
    )


def build(argv: list[str]) -> FaceInsightCLI:
    """The model, data module and trainer a ``faceinsight fit`` command line builds (``-c`` presets, overrides),
    without running anything: for scripts that drive them themselves (``benchmarks/image_signal.py``)."""
    return _lightning(argv, run=False)


@dataclass(frozen=True)
class Tool:
    """A command beside training: ``target`` (``module:function`` taking the remaining argv), or a group of
    ``commands``; ``help`` is its line in ``faceinsight --help``."""

    help: str
    target: str = ""
    commands: dict[str, Tool] = field(default_factory=dict)


# LightningCLI's subcommands: ``faceinsight <command> --help`` lists their options.
TRAINING = {
    "fit": "train on a preset (-c configs/<preset>.yaml), then test the best checkpoint",
    "validate": "score a checkpoint on the validation splits",
    "test": "score a checkpoint on the test splits, next to the majority baseline",
    "predict": "one JSON line of answers per test face, or per image of --data.predict_images",
}

TOOLS: dict[str, Tool] = {
    "ablate": Tool(
        "the paper's module ablation, or a sweep, over seeds: tables and plots", "faceinsight.tools.ablate:main"
    ),
    "describe": Tool(
        "each face in words, decoded and generated, and how often the words contradict the answers",
        "faceinsight.tools.describe:main",
    ),
    "eval-text": Tool("score another MLLM's free-text answers to the exported questions", "faceinsight.eval.text:main"),
    "graph": Tool(
        "the correlation graph (eq. 5-7)",
        commands={"export": Tool("a checkpoint's graph as JSON", "faceinsight.tools.graph:export_main")},
    ),
    "pretrain": Tool(
        "pretrain the small presets' backbones on captions from labels",
        commands={
            "all": Tool("every stage not yet done, then optionally fit", "faceinsight.tools.pretrain_all:main"),
            "clip": Tool(
                "CLIP image and text towers, contrastive (FLIP's recipe)", "faceinsight.train.pretrain.clip:main"
            ),
            "seg": Tool("the parsing-map encoder E_s", "faceinsight.train.pretrain.seg:main"),
            "lm": Tool(
                "a small LLM on face descriptions and question-answer pairs", "faceinsight.train.pretrain.lm:main"
            ),
        },
    ),
    "qa": Tool(
        "questions for any MLLM",
        commands={"export": Tool("a dataset's questions as JSON lines", "faceinsight.text.qa:export_main")},
    ),
    "rules": Tool(
        "rule files (eq. 9)",
        commands={"audit": Tool("how often real labels break each rule", "faceinsight.logic.audit:main")},
    ),
    "segparser": Tool(
        "the U-Net face parser",
        commands={
            "fit": Tool("train it on maps from a dataset or a parser", "faceinsight.data.segmentation.unet:main")
        },
    ),
    "synthface": Tool(
        "the procedural face set",
        commands={"preview": Tool("a PNG grid of samples", "faceinsight.data.synthface.preview:main")},
    ),
}

HELP = ("-h", "--help")


def help_text(usage: str, sections: dict[str, dict[str, str]], footer: str = "") -> str:
    """``usage``, then each section's commands, one line each."""
    width = max(len(name) for commands in sections.values() for name in commands) + 2
    lines = [f"usage: {usage}"]
    for heading, commands in sections.items():
        lines += ["", heading, *(f"  {name:<{width}}{text}" for name, text in commands.items())]
    return "\n".join([*lines, *(["", footer] if footer else [])])


def main_help() -> str:
    """``faceinsight --help``: every command, one line each."""
    tools = {name: f"{{{','.join(t.commands)}}} {t.help}" if t.commands else t.help for name, t in TOOLS.items()}
    return help_text(
        "faceinsight [-c CONFIG] <command> ...",
        {"training (LightningCLI: -c configs, dotted overrides, --print_config):": TRAINING, "tools:": tools},
        "`faceinsight <command> --help` shows a command's options.",
    )


def _run_tool(name: str, words: list[str]) -> None:
    tool = TOOLS[name]
    if tool.commands:
        group = help_text(
            f"faceinsight {name} {{{','.join(tool.commands)}}} ...",
            {f"{tool.help}:": {k: t.help for k, t in tool.commands.items()}},
        )
        if words[:1] and words[0] in HELP:
            print(group)
            sys.exit(0)
        if not words or words[0] not in tool.commands:
            sys.exit(group)
        tool, words = tool.commands[words[0]], words[1:]
    module, function = tool.target.split(":")
    getattr(importlib.import_module(module), function)(words)


def run(argv: list[str] | None = None) -> FaceInsightCLI | None:
    """Run one ``faceinsight`` command; returns the LightningCLI (model, trainer, data) for training commands."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub is reachable: never try one
    words = sys.argv[1:] if argv is None else argv
    if not words or words[0] in HELP:
        print(main_help(), file=sys.stdout if words else sys.stderr)
        sys.exit(0 if words else 2)
    if words[0] in TOOLS:
        _run_tool(words[0], words[1:])
        return None
    return _lightning(argv)


def main() -> None:
    """Entry point of the ``faceinsight`` console script."""
    run()


if __name__ == "__main__":
    main()
