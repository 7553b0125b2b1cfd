"""Every command's --help follows one pattern: synopsis, description, options, example."""

from __future__ import annotations

import argparse

import pytest

from paymigrate_dev.cli import main, parser


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


def _leaf_parsers(p=None, prefix=()):
    """Every runnable command's parser, sub-commands included (``workload start``...)."""
    p = p or parser()
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(prefix), p
        return
    for name, child in subs[0].choices.items():
        yield from _leaf_parsers(child, (*prefix, name))


def test_every_command_has_json_output():
    missing = [name for name, p in _leaf_parsers() if "--json" not in p._option_string_actions]
    assert missing == [], f"commands without --json: {missing}"


@pytest.mark.parametrize("argv", [["status", "--json"], ["env", "--json"], ["down", "--json"]])
def test_json_alone_on_stdout_for_a_stack_never_started(argv, tmp_path, monkeypatch, capsys):
    import json

    monkeypatch.setenv("PAYMIGRATE_HOME", str(tmp_path / "none"))
    main(argv)
    out = capsys.readouterr().out
    doc = json.loads(out)
    if argv[0] == "status":
        assert {c["detail"] for c in doc["components"]} == {"not created"} and doc["migration"] is None


# Errors past the arguments' own checks (those are refused by argparse in one line, exit 2):
# a server that does not answer, and no database named at all.
@pytest.mark.parametrize("argv", [["validate", "--json", "--source", "host=127.0.0.1 port=1 dbname=x",
                                   "--target", "host=127.0.0.1 port=1 dbname=x"],
                                  ["seed", "--rows", "10", "--json"]])
def test_an_error_with_json_is_json_on_stdout(argv, monkeypatch, capsys):
    import json

    monkeypatch.delenv("PAYMIGRATE_SOURCE_DSN", raising=False)
    monkeypatch.delenv("PAYMIGRATE_APP_DSN", raising=False)
    assert main(argv) == 2
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["command"] == argv[0] and doc["error"] and doc["error"] in captured.err
