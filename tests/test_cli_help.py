"""Every command is found from ``faceinsight --help``, and every ``--help`` exits 0."""

import pytest

from faceinsight.cli import TOOLS, TRAINING, run

COMMANDS = [
    *([name] for name in TRAINING),
    *([name] for name in TOOLS),
    *([name, sub] for name, tool in TOOLS.items() for sub in tool.commands),
]


def help_exit(capsys, words: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run([*words, "--help"])
    assert exit_info.value.code in (None, 0), words
    return capsys.readouterr().out


def test_top_level_help_lists_every_command_on_one_line(capsys):
    lines = help_exit(capsys, []).splitlines()
    for name in [*TRAINING, *TOOLS]:
        assert sum(line.split()[:1] == [name] for line in lines) == 1, name
    for name, tool in TOOLS.items():
        assert any(line.split()[:2] == [name, f"{{{','.join(tool.commands)}}}"] for line in lines) or not tool.commands


@pytest.mark.parametrize("words", COMMANDS, ids=" ".join)
def test_every_command_help_exits_0(capsys, words):
    text = help_exit(capsys, words)
    assert text.startswith("usage:") or "usage:" in text.lower()


def test_no_command_prints_the_list_and_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run([])
    assert exit_info.value.code == 2
    assert "pretrain" in capsys.readouterr().err
