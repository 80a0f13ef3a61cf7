"""docs/architecture.md stays true: every ``module:function`` it names imports, and every path it names exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "architecture.md").read_text()
NAMES = sorted(set(re.findall(r"`(faceinsight(?:\.\w+)*):([\w.]+)`", PAGE)))
PATHS = sorted(set(re.findall(r"`(faceinsight/[\w/.]*)`", PAGE)))


def test_the_page_names_functions_and_paths():
    assert len(NAMES) >= 20 and PATHS


@pytest.mark.parametrize(("module", "qualname"), NAMES, ids=[f"{m}:{q}" for m, q in NAMES])
def test_every_named_function_imports(module, qualname):
    target = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    assert callable(target)


@pytest.mark.parametrize("path", PATHS)
def test_every_named_path_exists(path):
    assert (ROOT / path).exists()
