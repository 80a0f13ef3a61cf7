"""Perplexity of a saved ``faceinsight pretrain lm`` folder on any split, with the settings it was trained with.

``pretrain lm`` reports the validation split; this scores the test split (or any other) for the final figures, with
the same documents, baselines and yes/no check (``faceinsight.train.pretrain.lm.evaluate``), the yes/no answers also
apart for the questions whose answer the document's caption states and for the rest:

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/lm_perplexity.py runs/pretrain/lm_celebamaskhq --split test
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml
from transformers import AutoModelForCausalLM

from faceinsight.train.pretrain import common, lm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a pretrain lm output folder (weights, tokenizer, pretraining.json)")
    parser.add_argument("--split", default="test")
    parser.add_argument(
        "--json", type=Path, help="write the evaluation here (default <folder>/perplexity_<split>.json)"
    )
    args = parser.parse_args()

    saved = json.loads((args.folder / common.REPORT).read_text())["config"]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as overlay:  # typed by the command's own parser
        overlay.write(yaml.safe_dump(saved))
        overlay.flush()
        config = common.parse(lm.LMPretraining, ["-c", overlay.name], "lm_perplexity", "")
    started = time.perf_counter()
    tokenizer = common.load_tokenizer(str(args.folder))
    model = AutoModelForCausalLM.from_pretrained(args.folder).eval()
    data = common.open_data(config.datasets, config.batch_size, roots=config.roots)
    evaluation = lm.evaluate(model, tokenizer, config, data, args.split)
    evaluation["seconds"] = time.perf_counter() - started
    out = args.json or args.folder / f"perplexity_{args.split}.json"
    out.write_text(json.dumps(common.json_ready(evaluation), indent=2) + "\n")
    print(lm.format_table(evaluation))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
