"""``faceinsight pretrain all``: a stage whose folder holds a run with the same settings is reused, any other is run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faceinsight.tools import pretrain_all as regime
from faceinsight.train.pretrain import common


def _overlay(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _fake_run(out: Path, config: object, seconds: float) -> None:
    """A finished run's report, as a stage's ``run`` writes it (only the parts ``pretrain all`` reads)."""
    out.mkdir(parents=True)
    common.write_report(out, {"config": config, "seconds": {"total": seconds}})


def test_stage_with_the_same_settings_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "clip"
    overlay = _overlay(tmp_path, "o.yaml", f"out: {out}\nmax_steps: 7\n")
    _fake_run(out, regime.stage_config("clip", [overlay]), 123.0)
    ran = []
    monkeypatch.setattr("faceinsight.train.pretrain.clip.run", lambda config: ran.append(config))
    result = regime.run_stage("clip", [overlay])
    assert result.reused and result.trained_seconds == 123.0 and result.out == str(out) and not ran


def test_changed_settings_or_force_run_the_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "lm"
    _fake_run(out, regime.stage_config("lm", [_overlay(tmp_path, "a.yaml", f"out: {out}\nmax_steps: 7\n")]), 5.0)
    changed = _overlay(tmp_path, "b.yaml", f"out: {out}\nmax_steps: 8\n")
    ran = []

    def fake_run(config: object) -> dict:
        ran.append(config)
        return {"seconds": {"total": 9.0}}

    monkeypatch.setattr("faceinsight.train.pretrain.lm.run", fake_run)
    result = regime.run_stage("lm", [changed])
    assert not result.reused and result.trained_seconds == 9.0 and ran[0].max_steps == 8
    same = _overlay(tmp_path, "c.yaml", f"out: {out}\nmax_steps: 7\n")
    assert regime.run_stage("lm", [same]).reused
    assert not regime.run_stage("lm", [same], force=True).reused and len(ran) == 2


def test_report_written_by_another_folder_name_still_matches(tmp_path: Path) -> None:
    """The folder a report sits in is not a setting: a run made with the default folder matches one naming it."""
    out = tmp_path / "clip"
    config = regime.stage_config("clip", [])
    _fake_run(out, config, 1.0)
    saved = json.loads((out / common.REPORT).read_text())
    assert saved["config"]["out"] is None
    assert regime.finished(out, regime.stage_config("clip", [_overlay(tmp_path, "o.yaml", f"out: {out}\n")]))


def test_unknown_stage_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        regime.main(["--stages", "clip,vit"])
    assert "unknown stages ['vit']" in capsys.readouterr().err
