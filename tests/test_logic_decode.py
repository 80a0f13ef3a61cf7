"""Consistent decoding against brute-force MAP search."""

from __future__ import annotations

import itertools

import pytest
import torch

from faceinsight.logic import parse_rules
from faceinsight.vocab import CELEBA_ATTRIBUTES

NAMES = ["Bald", "Bangs", "Wavy_Hair", "Male", "Female", "Smiling", "Young"]
RULES = """
[hard] Bald -> ~Bangs & ~Wavy_Hair
[hard] Bangs | Wavy_Hair | Bald
[hard] exactly_one(Male, Female)
[soft] Smiling -> Young
"""


def brute_force(rs, p: torch.Tensor) -> torch.Tensor:
    hard = [j for j, r in enumerate(rs.rules) if r.hard]
    table = torch.tensor(list(itertools.product([False, True], repeat=p.shape[1])))
    ok = rs.satisfied(table)[:, hard].all(1)
    logp = table.double() @ p.log().T + (~table).double() @ torch.log1p(-p).T  # [2^K, B]
    logp[~ok] = -torch.inf
    return table[logp.argmax(0)]


def test_decode_is_the_most_probable_consistent_assignment() -> None:
    rs = parse_rules(RULES, NAMES)
    torch.manual_seed(0)
    p = torch.rand(200, len(NAMES), dtype=torch.float64) * 0.98 + 0.01
    got = rs.decode(p)
    assert torch.equal(got, brute_force(rs, p))
    assert rs.satisfied(got)[:, rs.hard].all()
    # Smiling and Young are in no hard rule: plain thresholding even when the soft rule is broken
    assert torch.equal(got[:, 5:], p[:, 5:] >= 0.5)


def test_decode_fixes_an_inconsistent_threshold() -> None:
    rs = parse_rules(RULES, NAMES)
    p = torch.tensor([[0.9, 0.6, 0.2, 0.7, 0.8, 0.5, 0.5]])
    # thresholding says Bald & Bangs, Male & Female; best fix keeps Bald (0.9) and Female (0.8)
    assert rs.decode(p)[0, :5].tolist() == [True, False, False, False, True]


def test_component_size_cap_names_the_component() -> None:
    names = list(CELEBA_ATTRIBUTES[:22])
    chain = "".join(f"[hard] {a} -> ~{b}\n" for a, b in itertools.pairwise(names))
    rs = parse_rules(chain, names)  # loads (soft use is fine), but cannot be decoded exactly
    with pytest.raises(ValueError, match=r"22 characteristics.*5_o_Clock_Shadow"):
        rs.decode(torch.rand(2, len(names)))
