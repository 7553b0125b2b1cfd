"""Every command's --help follows one pattern: synopsis, description, options, example."""

from __future__ import annotations

import pytest

from paymigrate.cli import main, parser


def _commands():
    sub = next(a for a in parser()._actions if a.dest == "command")
    return sorted(sub.choices)


@pytest.mark.parametrize("name", _commands())
def test_help_has_synopsis_and_example(name, capsys):
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: paymigrate {name}")
    assert "example:" in out and "$ paymigrate" in out


def test_foundation_commands_exist():
    assert {"up", "down", "status", "env"} <= set(_commands())


def test_status_of_a_stack_never_started(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PAYMIGRATE_HOME", str(tmp_path / "none"))
    assert main(["status"]) == 1
    assert "not created" in capsys.readouterr().out
