"""``faceinsight ablate``: cells, statistics against hand-computed values, outputs, resuming, a real run."""

import csv
import json
import math
from pathlib import Path

import pytest

from faceinsight.tools.ablate import (
    SETTINGS,
    main,
    make_cells,
    mean_std,
    per_characteristic_deltas,
    plot,
    step_test,
    summary_markdown,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = "[{kind: synthface, options: {num_train: 48, num_val: 16, num_test: 16, size: 64}}]"


def record(setting: str, seed: int, acc: float, mae: float, smile: float, values: dict | None = None) -> dict:
    return {"setting": setting, "seed": seed, "values": values or {}, "seconds": 10.0, "threads": 1, "val": 0.5,
            "monitor": "val/x", "model": {"d": {"attributes/accuracy": acc, "age/mae": mae}},
            "majority_baseline": {"d": {"attributes/accuracy": 0.7, "age/mae": 9.0}},
            "per_characteristic": {"d": {"Smiling": {"accuracy": smile, "ap": smile / 2}}}}  # fmt: skip


def test_cells_are_the_papers_settings_or_the_sweeps_product(tmp_path):
    cells = make_cells(tmp_path, 2, [], list(SETTINGS))
    assert [(c.setting, c.seed) for c in cells][:3] == [("org", 0), ("org", 1), ("+seg", 0)]
    org = dict(zip(cells[0].overrides[::2], cells[0].overrides[1::2], strict=True))
    assert org == {f"--model.use_{m}": "false" for m in ("seg", "correlation", "logic")}
    full = dict(zip(cells[-1].overrides[::2], cells[-1].overrides[1::2], strict=True))
    assert set(full.values()) == {"true"}
    command = cells[-1].command(["a.yaml"], ["--x", "1"])
    assert command[:6] == ["faceinsight", "fit", "-c", "a.yaml", "--x", "1"]
    assert command[command.index("--seed_everything") + 1] == "1"

    sweep = make_cells(tmp_path, 1, ["model.correlation.omega=0,0.5", "model.lr=1e-3,2e-3"], [])
    assert [c.setting for c in sweep] == ["omega=0 lr=1e-3", "omega=0 lr=2e-3", "omega=0.5 lr=1e-3",
                                          "omega=0.5 lr=2e-3"]  # fmt: skip
    assert sweep[3].overrides == ["--model.correlation.omega", "0.5", "--model.lr", "2e-3"]
    assert sweep[3].values == {"model.correlation.omega": "0.5", "model.lr": "2e-3"}
    with pytest.raises(SystemExit, match="unknown setting"):
        make_cells(tmp_path, 1, [], ["org", "nope"])


def test_step_test_matches_a_hand_computed_welch_test():
    # means 0.6 and 0.9, both std 0.1: delta 0.3 > 0.1; t = 0.3 / sqrt(0.01/3 * 2) = 3.674 at df 4, p = 0.0213
    t = step_test([0.5, 0.6, 0.7], [0.8, 0.9, 1.0])
    assert t["delta"] == pytest.approx(0.3) and t["sd"] == pytest.approx(0.1) and t["beyond_sd"]
    assert t["p"] == pytest.approx(0.0213, abs=5e-4)
    # within one std: not beyond
    assert not step_test([0.5, 0.6, 0.7], [0.55, 0.65, 0.75])["beyond_sd"]
    # lower is better (age MAE): a drop is an improvement
    drop = step_test([10.0, 11.0, 12.0], [7.0, 8.0, 9.0], lower_is_better=True)
    assert drop["delta"] == pytest.approx(3.0) and drop["beyond_sd"]
    assert mean_std([1.0]) == (1.0, pytest.approx(math.nan, nan_ok=True))


def test_summary_and_per_characteristic_deltas_from_records():
    records = [record("org", s, acc, 10 + s, 0.5 + 0.1 * s) for s, acc in enumerate([0.80, 0.82, 0.84])]
    records += [record("full", s, acc, 8 + s, 0.7 + 0.1 * s) for s, acc in enumerate([0.90, 0.91, 0.92])]
    text = summary_markdown(records, ["org", "full"], "t", ordered=True)
    assert "| org | 0.8200 ± 0.0200 | 11.0000 ± 1.0000 | 10 |" in text
    assert "| full | 0.9100 ± 0.0100 | 9.0000 ± 1.0000 | 10 |" in text
    assert "| majority | 0.7000 | 9.0000 | |" in text
    assert "| org → full | +0.0900 (**yes**" in text  # accuracy up by 0.09 > 0.02
    assert "+2.0000 (**yes**" in text  # MAE down by 2 > 1
    [delta] = per_characteristic_deltas(records, ["org", "full"])
    assert delta["characteristic"] == "Smiling" and delta["step"] == "org -> full"
    assert delta["accuracy_delta"] == pytest.approx(0.2) and delta["ap_delta"] == pytest.approx(0.1)
    assert "helps Smiling +0.200; hurts none" in text


def test_sweep_plot_is_written(tmp_path):
    records = [record(f"omega={w}", s, 0.8 + w / 10 + s / 100, 9.0, 0.5, {"model.correlation.omega": str(w)})
               for w in (0.0, 0.5, 1.0) for s in range(2)]  # fmt: skip
    plot(records, ["omega=0.0", "omega=0.5", "omega=1.0"], tmp_path / "sweep.png", sweep=True)
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ablate_runs_real_cells_writes_outputs_and_resumes(tmp_path, capsys):
    argv = ["-c", str(ROOT / "configs/synthface.yaml"), "--settings", "org", "full", "--seeds", "1", "--jobs", "2",
            "--out", str(tmp_path), "--", "--data.datasets", TINY, "--data.batch_size", "16",
            "--data.num_workers", "0", "--trainer.max_epochs", "1"]  # fmt: skip
    main(argv)
    with open(tmp_path / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["setting"], r["seed"]) for r in rows] == [("org", "0"), ("full", "0")]
    assert 0 <= float(rows[0]["synthface/attributes/mAP"]) <= 1
    for setting, on in (("org", False), ("full", True)):
        metrics = json.loads((tmp_path / setting / "seed0" / "test_metrics.json").read_text())
        assert set(metrics["modules"].values()) == {on}  # the switches really reached the run
        assert "Smiling" in metrics["per_characteristic"]["synthface"]
        assert (tmp_path / setting / "seed0" / "version_0" / "config.yaml").is_file()  # re-runnable alone
        assert "faceinsight fit" in (tmp_path / setting / "seed0" / "command.txt").read_text()
    assert (tmp_path / "ablation.png").is_file() and "| org |" in (tmp_path / "summary.md").read_text()
    capsys.readouterr()
    main(argv)  # everything done: nothing runs again
    assert capsys.readouterr().out.count("done before") == 2
    assert not (tmp_path / "org" / "seed0" / "version_1").exists()
