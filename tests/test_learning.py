"""A broken training signal (loss, label mask, label order) fails here: a short run must clearly beat the majority.

The run is the real CLI path (SynthFace, the preset's loss, rules and metrics) with a miniature architecture at
32 px, so that about 200 optimisation steps fit in the suite's budget. It reads with ``readout: per_characteristic``
(docs/learning.md): at this size eq. 2's shared readout depends on luck. Measured, 192 steps: eq. 2 answered the
majority gender with seed 0 and the balanced sampler (0.637 = majority; mAP not checked) but learnt it with seed 1
(0.883) or the old sampler (0.813); the per-characteristic readout gives gender 0.898 and mAP 0.448 with seed 0.
"""

from __future__ import annotations

import json

from test_training import fit

SMALL = (
    "[{kind: synthface, options: {num_train: 2048, num_val: 64, num_test: 256, size: 32, difficulty: 0.0, "
    "label_noise: 0.0}}]"
)
MINIATURE = [
    "--data.image_size", "32", "--model.lr", "0.003",
    "--model.image_encoder.arch", "{image_size: 32, patch_size: 8, hidden_size: 64, num_hidden_layers: 2, "
    "num_attention_heads: 2, intermediate_size: 128}",
    "--model.seg_encoder.arch", "{img_size: 32, patch_size: 8, embed_dim: 48, depth: 1, num_heads: 3}",
    "--model.llm.arch", "{hidden_size: 64, intermediate_size: 128, num_hidden_layers: 1, num_attention_heads: 2, "
    "num_key_value_heads: 2, max_position_embeddings: 256}",
]  # fmt: skip


def test_short_synthface_run_beats_the_majority_baseline(tmp_path):
    fit(tmp_path, "--data.datasets", SMALL, "--data.batch_size", "32", "--trainer.max_epochs", "3",
        "--seed_everything", "0", "--model.readout", "per_characteristic", *MINIATURE)  # fmt: skip
    report = json.loads((tmp_path / "metrics.json").read_text())
    model, majority = report["model"]["synthface"], report["majority_baseline"]["synthface"]
    # Majority mAP is the attributes' mean positive rate (0.24); measured: 0.448 after these 192 steps.
    assert model["attributes/mAP"] > majority["attributes/mAP"] + 0.10, (model, majority)
    assert model["gender/accuracy"] > majority["gender/accuracy"] + 0.10  # measured 0.898 vs 0.637
    assert model["attributes/f1"] > majority["attributes/f1"]
