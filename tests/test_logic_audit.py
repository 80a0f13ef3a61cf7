"""Audit of rules against labels: hand-made tensors, and the real CelebA slice when present."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from test_data_loaders import attr_text, make_celeba, values_for

from faceinsight.logic import parse_rules
from faceinsight.logic.audit import audit, main, markdown_table
from faceinsight.vocab import CELEBA_ATTRIBUTES

NAMES = ["Bald", "Bangs", "Black_Hair", "Blond_Hair"]
DATA = Path(os.environ.get("FACEINSIGHT_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def test_audit_counts_support_and_violations_under_the_mask() -> None:
    rs = parse_rules("Bald -> ~Bangs\nat_most_one(Black_Hair, Blond_Hair) | Bald\n", NAMES)
    labels = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1]], dtype=torch.float32)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0], [0, 1, 1, 1]], dtype=torch.bool)
    rows = audit(rs, labels, mask)
    assert [(r["support"], r["violations"]) for r in rows] == [(3, 1), (2, 0)]
    assert rows[0]["rate"] == pytest.approx(1 / 3)
    table = markdown_table(rows, hard_below=0.5)
    assert "| `at_most_one(Black_Hair, Blond_Hair) \\| Bald` | [hard] | 2 | 0 | 0.00 | yes |" in table
    empty = audit(rs, labels, torch.zeros_like(mask))
    assert empty[0]["support"] == 0 and math.isnan(empty[0]["rate"])


def test_audit_reads_the_training_split_by_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = make_celeba(tmp_path, n=6, images=False)  # partition codes i % 3: rows 0 and 3 are train
    rows = [(m, values_for(i)) for i, m in enumerate(names)]
    bald, bangs = CELEBA_ATTRIBUTES.index("Bald"), CELEBA_ATTRIBUTES.index("Bangs")
    for i in (1, 2, 4, 5):  # bald with bangs, but only in val and test rows
        rows[i][1][bald] = rows[i][1][bangs] = 1
    (tmp_path / "list_attr_celeba.txt").write_text(attr_text(rows))
    rules = tmp_path / "one.rules"
    rules.write_text("[hard] Bald -> ~Bangs\n")
    main([str(rules), "--data", str(tmp_path)])
    assert "split train" in (out := capsys.readouterr().out) and "| [hard] | 2 | 0 | 0.00 | yes |" in out
    main([str(rules), "--data", str(tmp_path), "--split", "all"])
    assert "includes the test rows" in (out := capsys.readouterr().out) and "| [hard] | 6 | 4 | 66.67 | no |" in out
    with pytest.raises(SystemExit):
        main([str(rules), "--data", str(tmp_path), "--split", "test"])


def test_audit_cli_on_real_celeba(capsys: pytest.CaptureFixture[str]) -> None:
    folder = DATA / "celeba"
    if not (folder / "list_attr_celeba.txt").is_file():
        pytest.skip(f"CelebA attribute slice not found under {DATA} (set FACEINSIGHT_DATA)")
    rules = Path(__file__).resolve().parents[1] / "rules" / "celeba.rules"
    main([str(rules), "--data", str(folder)])  # the training split: all 20,000 rows of the slice
    out = capsys.readouterr().out
    # CelebA's labels never mark a bald face with bangs, but often stubble with No_Beard (audit in docs/logic.md)
    assert "| `Bald -> ~Bangs` | [hard] | 20000 | 0 | 0.00 | yes |" in out
    assert "| `No_Beard -> ~5_o_Clock_Shadow` | [soft] | 20000 | 624 | 3.12 | no |" in out
