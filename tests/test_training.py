"""The training loop through the real CLI: module switches, metrics output and checkpoint round trips."""

import json
from pathlib import Path

import pytest
import torch

from faceinsight.cli import run
from faceinsight.tools.graph import load_graph
from faceinsight.train.faceinsight_module import FaceInsightModule
from faceinsight.train.module import unvalidated_tail

ROOT = Path(__file__).resolve().parents[1]
TINY = "[{kind: synthface, options: {num_train: 48, num_val: 16, num_test: 16, size: 64}}]"


def fit(tmp_path: Path, *overrides: str):
    args = [
        "fit", "-c", str(ROOT / "configs/synthface.yaml"),
        "--data.datasets", TINY, "--data.batch_size", "16", "--data.num_workers", "0",
        "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir", str(tmp_path),
        "--model.metrics_file", str(tmp_path / "metrics.json"),
        "--model.rules", json.dumps([str(ROOT / f"rules/{r}.rules") for r in ("celeba", "demographics", "expression")]),
        *overrides,
    ]  # fmt: skip
    return run(args)


@pytest.mark.parametrize("switch", [None, "use_seg", "use_correlation", "use_logic"])
def test_fit_with_each_module_switched_off(tmp_path, switch):
    cli = fit(tmp_path, *([f"--model.{switch}", "false"] if switch else []))
    model = cli.model.model
    assert (model.seg_encoder is None) == (switch == "use_seg")
    assert cli.datamodule.with_segmaps == (switch != "use_seg")  # linked: no maps are loaded for nothing
    assert (model.gcn is None) == (switch == "use_correlation")
    assert (cli.model.logic_loss is None) == (switch == "use_logic")
    assert model.stats.is_set  # statistics from the training split
    report = json.loads((tmp_path / "metrics.json").read_text())
    synth = report["model"]["synthface"]
    for key in ("attributes/accuracy", "attributes/f1", "attributes/mAP", "age/accuracy", "gender/f1",
                "expression/accuracy", "age/mae", "age/cs@5", "consistency", "consistency_all"):  # fmt: skip
        assert 0 <= synth[key] <= (100 if key == "age/mae" else 1), key
    assert set(report["majority_baseline"]["synthface"]) == set(synth)
    if switch:
        assert report["modules"][switch] is False


def test_checkpoint_round_trip_predicts_identically(tmp_path):
    cli = fit(tmp_path, "--model.decoding", "consistent")
    path = cli.trainer.checkpoint_callback.best_model_path
    restored = FaceInsightModule.load_from_checkpoint(path, map_location="cpu", decoding="consistent").eval()
    original = cli.model.eval()
    assert restored.model.characteristics == original.model.characteristics
    assert restored.rules.to_text() == original.rules.to_text()
    for name in ("m", "n", "known"):
        assert torch.equal(getattr(restored.model.stats, name), getattr(original.model.stats, name))
    graph = load_graph(path)  # what the notebook inspects
    assert graph["names"] == original.model.characteristics
    torch.testing.assert_close(graph["C_hat"], original.model.gcn.adjacency(original.model.stats).cpu())
    batch = next(iter(cli.datamodule.test_dataloader()[0]))
    with torch.no_grad():
        before = original.predict_step(batch, 0)
        after = restored.predict_step(batch, 0)
    assert torch.equal(before["probs"], after["probs"])
    assert torch.equal(before["preds"], after["preds"])
    # Consistent decoding satisfies every hard rule, so the consistency metric is 1 by construction.
    assert restored.rules.satisfied(after["preds"])[:, restored.rules.hard].all()
    assert json.loads((tmp_path / "metrics.json").read_text())["model"]["synthface"]["consistency"] == 1.0


def test_predict_writes_one_line_per_face(tmp_path):
    cli = fit(tmp_path)
    out = tmp_path / "predictions.jsonl"
    run(
        [
            "predict", "-c", str(ROOT / "configs/synthface.yaml"), "--data.datasets", TINY,
            "--data.num_workers", "0", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--ckpt_path", cli.trainer.checkpoint_callback.best_model_path, "--predictions.output_file", str(out),
        ]
    )  # fmt: skip
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 16  # num_test in TINY
    assert len({r["key"] for r in records}) == 16
    for r in records:
        assert list(r["probabilities"]) == cli.model.model.characteristics
        assert r["positive"] == [n for n, p in r["probabilities"].items() if p >= 0.5]


def test_validation_that_misses_the_end_of_an_epoch_is_reported(tmp_path):
    # Lightning validates every N batches of an epoch and then not at its end: celebahq64's 339 batches at N = 85 leave
    # steps 256-339 unvalidated, so the checkpoint picked on validation is step 255's.
    message = unvalidated_tail(339, 85)
    assert "last 84 steps" in message and "(3, 113)" in message
    assert unvalidated_tail(339, 113) is None and unvalidated_tail(340, 85) is None
    assert unvalidated_tail(339, float("inf")) is None
    fit(tmp_path, "--trainer.val_check_interval", "2")  # 3 batches of 16: step 3 is never validated
    warnings = json.loads((tmp_path / "metrics.json").read_text())["run"]["warnings"]
    assert [w for w in warnings if "every 2 training batches of an epoch of 3, so the last 1 steps" in w]


def test_load_weights_puts_a_fit_checkpoint_into_a_module_built_anew(tmp_path):
    cli = fit(tmp_path)
    path = cli.trainer.checkpoint_callback.best_model_path
    restored = FaceInsightModule.load_from_checkpoint(path, map_location="cpu").eval()
    torch.manual_seed(1)
    fresh = FaceInsightModule(**restored.hparams).eval()
    batch = next(iter(cli.datamodule.test_dataloader()[0]))
    with torch.no_grad():
        assert not torch.equal(fresh.predict_step(batch, 0)["probs"], restored.predict_step(batch, 0)["probs"])
        fresh.load_weights(path)
        assert torch.equal(fresh.predict_step(batch, 0)["probs"], restored.predict_step(batch, 0)["probs"])
    assert fresh.model.stats.is_set and fresh.rules_source == "checkpoint"
