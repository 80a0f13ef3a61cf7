"""Training and evaluation under Lightning's DDP: 2 CPU processes (gloo) against one process at the same global batch.

What makes the two runs comparable (docs/scaling.md, "What DDP computes"):

* data order: the training sampler (``faceinsight.data.module.WeightedDraws``) draws its list of faces from its own
  generator seeded with ``seed_everything``'s seed + the epoch, so every process and the single process draw the same
  list; process r takes the draws r, r + 2, ..., so step s of the two processes at batch b covers exactly the draws
  2sb .. 2sb + 2b - 1, the single process's batch s at batch 2b. (Lightning's own ``DistributedSamplerWrapper`` would
  shuffle the list again: the epoch's faces would be the same, the global batches would not.)
* the loss: eq. 3 and eq. 9 are means over samples and DDP averages the processes' gradients, so the mean of the two
  per-process means over b faces is the mean over the 2b faces, and AdamW takes the same step;
* nothing else depends on the batch: every dropout rate is 0, there is no batch norm, and the initial weights come from
  the same seed (DDP broadcasts rank 0's anyway).

Evaluation: each process scores every other face of the validation and test splits (no padding with repeated faces),
and the torchmetrics states are summed or concatenated over processes when computed, so the figures are those of one
process scoring the whole split. The splits have odd sizes, where a padding sampler would count a face twice.

The 2-process run goes through the real command in a subprocess (``python -m`` so that Lightning can relaunch it per
process), like the DDP predict test in tests/test_predict.py. The preset's small encoders train, and CLIP's last layer
is never used (LLaVA reads the penultimate one), hence ``ddp_find_unused_parameters_true``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.distributed as dist
from test_training import ROOT

from faceinsight.cli import run

if not (dist.is_available() and dist.is_gloo_available()):
    pytest.skip("torch.distributed with the gloo backend is not available in this torch build", allow_module_level=True)

B = 4  # faces per process and step; the single process takes 2 * B
STEPS = 3
NUM_VAL, NUM_TEST = 15, 17  # odd: a padding sampler would score a face twice and change every figure
DATA = f"[{{kind: synthface, options: {{num_train: 48, num_val: {NUM_VAL}, num_test: {NUM_TEST}, size: 32}}}}]"
ARCH = [  # the preset's encoders, smaller, at 32 px
    "--data.image_size", "32",
    "--model.image_encoder.arch", json.dumps(dict(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2,
                                                  num_attention_heads=4, intermediate_size=128)),
    "--model.seg_encoder.arch", json.dumps(dict(img_size=32, patch_size=8, embed_dim=48, depth=1, num_heads=3)),
    "--model.llm.arch", json.dumps(dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512)),
]  # fmt: skip
GRAD_RTOL, GRAD_ATOL = 1e-4, 1e-7  # float32: two sums over B faces, averaged, against one mean over 2B
# AdamW's first steps are about lr (1e-3) per weight whatever the gradient's size, so the float noise of gradients that
# are 0 in exact arithmetic (attention key biases: softmax ignores a constant added to every key) becomes steps of up
# to lr * noise / eps; measured 4e-5 at most, 1e-7 elsewhere. A different global batch moves weights ~lr per step apart.
WEIGHT_TOLERANCE = 2e-4
METRIC_TOLERANCE = 1e-6


class Probe(L.Callback):
    """Records what a process trains on: the keys of its training batches (one list per step), its trainable weights
    as training starts, and its gradients after the first backward pass (under DDP: after the all-reduce). Saved to
    ``<out>.rank<r>.pt`` when training ends."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.keys: list[list[str]] = []
        self.start: dict[str, torch.Tensor] = {}
        self.grads: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = {n: p.detach().clone() for n, p in pl_module.named_parameters() if p.requires_grad}

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict, batch_idx: int):
        self.keys.append(list(batch["key"]))

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.grads:
            self.grads = {n: p.grad.clone() for n, p in pl_module.named_parameters() if p.grad is not None}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        record = {"keys": self.keys, "start": self.start, "grads": self.grads}
        torch.save(record, f"{self.out}.rank{trainer.global_rank}.pt")


def common_args(out: Path, batch_size: int) -> list[str]:
    return [
        "-c", str(ROOT / "configs/synthface.yaml"), *ARCH, "--data.datasets", DATA, "--data.num_workers", "0",
        "--data.batch_size", str(batch_size), "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(out), "--model.metrics_file", str(out / "metrics.json"),
    ]  # fmt: skip


def fit_args(out: Path, batch_size: int, *overrides: str) -> list[str]:
    return [
        "fit", *common_args(out, batch_size), "--data.samples_per_epoch", str(2 * B * STEPS),
        "--trainer.max_epochs", "1", "--trainer.num_sanity_val_steps", "0",
        "--trainer.logger.init_args.save_dir", str(out),
        "--trainer.callbacks+=test_ddp.Probe", "--trainer.callbacks.out", str(out / "probe"), *overrides,
    ]  # fmt: skip


def probes(out: Path, world_size: int) -> list[dict]:
    return [torch.load(out / f"probe.rank{r}.pt", weights_only=False) for r in range(world_size)]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    """``faceinsight fit`` with 2 CPU processes at batch B each: trains STEPS steps, validates, tests the checkpoint."""
    out = tmp_path_factory.mktemp("ddp")
    args = fit_args(out, B, "--trainer.strategy", "ddp_find_unused_parameters_true", "--trainer.devices", "2")
    path = os.pathsep.join(p for p in (str(Path(__file__).parent), os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-m", "faceinsight.cli", *args], cwd=out, env={**os.environ, "PYTHONPATH": path},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def single_run(tmp_path_factory) -> SimpleNamespace:
    """The same training in one process (this one) at batch 2B."""
    out = tmp_path_factory.mktemp("single")
    cli = run(fit_args(out, 2 * B, "--test_after_fit", "false"))
    (probe,) = probes(out, 1)
    return SimpleNamespace(model=cli.model, probe=probe)


def test_two_processes_split_the_single_process_global_batches(ddp_run, single_run):
    ranks, single = [p["keys"] for p in probes(ddp_run, 2)], single_run.probe["keys"]
    assert len(single) == STEPS and all(len(r) == STEPS for r in ranks)
    for step in range(STEPS):
        assert all(len(r[step]) == B for r in ranks)
        assert Counter(ranks[0][step] + ranks[1][step]) == Counter(single[step]), f"step {step}"


def test_ddp_gradient_is_the_single_process_gradient_of_the_global_batch(ddp_run, single_run):
    """After the all-reduce both processes hold the mean of their gradients: the gradient of eq. 4 over 2B faces."""
    ranks, single = [p["grads"] for p in probes(ddp_run, 2)], single_run.probe["grads"]
    assert set(ranks[0]) == set(ranks[1]) == set(single)  # the unused last CLIP layer has none in either run
    for name, grad in single.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), name
        torch.testing.assert_close(ranks[0][name], grad, rtol=GRAD_RTOL, atol=GRAD_ATOL, msg=name)


def test_two_processes_train_the_weights_of_one_process_at_the_same_global_batch(ddp_run, single_run):
    one = {n: p.detach() for n, p in single_run.model.named_parameters() if p.requires_grad}
    ckpt = torch.load(ddp_run / "version_0/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == STEPS
    two = ckpt["state_dict"]
    gap, name = max((float((one[n] - two[n]).abs().max()), n) for n in one)
    assert gap < WEIGHT_TOLERANCE, f"largest difference {gap:.2e}, in {name}"
    start = single_run.probe["start"]  # the comparison means something: training moved the weights far more
    assert max(float((one[n] - start[n]).abs().max()) for n in one) > 5 * WEIGHT_TOLERANCE


def flat(tree: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{key}/")
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.fixture(scope="module")
def single_evaluation(ddp_run, tmp_path_factory) -> SimpleNamespace:
    """The checkpoint the 2-process run tested, evaluated by one process: test (metrics file) and validation."""
    report = json.loads((ddp_run / "metrics.json").read_text())
    out = tmp_path_factory.mktemp("single_eval")
    args = ["test", *common_args(out, B), "--trainer.logger", "false", "--ckpt_path", report["run"]["checkpoint"]]
    cli = run(args)
    (val,) = cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)
    return SimpleNamespace(report=json.loads((out / "metrics.json").read_text()), val=val)


def test_test_metrics_of_two_processes_are_those_of_one_process_over_the_whole_split(ddp_run, single_evaluation):
    two = json.loads((ddp_run / "metrics.json").read_text())
    one = single_evaluation.report
    assert two["run"]["data"]["synthface"]["test"]["size"] == NUM_TEST
    for part in ("model", "majority_baseline", "rule_violation_rate"):
        a, b = flat(two[part]), flat(one[part])
        assert set(a) == set(b), part
        for key in a:
            assert a[key] == pytest.approx(b[key], abs=METRIC_TOLERANCE, nan_ok=True), f"{part}/{key}"
    # Counted over the 17 faces: a padded split (18) would make the shares multiples of 1/18.
    cs5 = two["model"]["synthface"]["age/cs@5"]
    assert cs5 * NUM_TEST == pytest.approx(round(cs5 * NUM_TEST), abs=1e-9)


def test_validation_metrics_logged_by_two_processes_are_over_the_whole_split(ddp_run, single_evaluation):
    with (ddp_run / "version_0/metrics.csv").open() as f:
        (logged,) = [row for row in csv.DictReader(f) if row.get("val/synthface/attributes/mAP")]
    # The validation loss is left out: sync_dist averages the processes' own means, which is not the mean over all
    # faces when their shares are uneven (8 and 7 here).
    expected = {k: float(v) for k, v in single_evaluation.val.items() if not k.endswith("/loss")}
    assert len(expected) > 10
    for key, value in expected.items():
        got = float(logged[key])
        assert got == pytest.approx(value, abs=METRIC_TOLERANCE) or (math.isnan(got) and math.isnan(value)), key


def reduce_in_process(rank: int, folder: str) -> None:
    """Process ``rank`` of 2: updates DatasetMetrics with every other face of ``data.pt`` (the evaluation sampler's
    share, uneven sizes), computes, and writes what it computed to ``rank<r>.json``."""
    from faceinsight.eval.metrics import DatasetMetrics
    from faceinsight.vocab import SCHEMAS

    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
    try:
        data = torch.load(f"{folder}/data.pt")
        metrics = DatasetMetrics(SCHEMAS["synthface"], SCHEMAS["synthface"].characteristics, data.pop("hard"))
        for rows in torch.arange(len(data["probs"]))[rank::2].split(4):
            metrics.update(**{k: v[rows] for k, v in data.items()})
        result = {"metrics": metrics.compute(), "per_rule": metrics.consistency.per_rule()}
        Path(folder, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_dataset_metrics_are_reduced_over_processes(tmp_path, run_processes):
    """Every process computes the metrics of all faces: counts and sums are summed, scores concatenated, and so are
    the per-rule violation rates and the age metrics (process 1 holds no face with an age in years)."""
    from faceinsight.data.synthface import SynthFace
    from faceinsight.eval.metrics import DatasetMetrics
    from faceinsight.vocab import SCHEMAS

    n, hard = 17, torch.tensor([True, False, True, True, False])
    faces = SynthFace(n, seed=3)
    labels, mask = faces.label_matrix()
    generator = torch.Generator().manual_seed(0)
    probs = torch.rand(labels.shape, generator=generator)
    ages = faces.ages()
    ages[1::2] = float("nan")  # the odd rows are process 1's
    data = {
        "probs": probs, "preds": probs >= 0.5, "labels": labels.float(), "mask": mask.bool(), "ages": ages,
        "satisfied": torch.rand(n, len(hard), generator=generator) > 0.3,
    }  # fmt: skip
    torch.save({**data, "hard": hard}, tmp_path / "data.pt")
    run_processes(reduce_in_process, tmp_path)

    single = DatasetMetrics(SCHEMAS["synthface"], SCHEMAS["synthface"].characteristics, hard)
    single.update(**data)
    expected = {"metrics": single.compute(), "per_rule": single.consistency.per_rule()}
    assert "age/mae" in expected["metrics"] and len(expected["per_rule"]) == len(hard)
    for rank in range(2):
        out = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert set(out["metrics"]) == set(expected["metrics"]), rank
        for key, value in expected["metrics"].items():
            assert out["metrics"][key] == pytest.approx(value, abs=1e-9, nan_ok=True), f"rank {rank}: {key}"
        assert out["per_rule"] == pytest.approx(expected["per_rule"], abs=1e-12), rank
