"""One CLI grammar: global options on either side of the command, help with
defaults, JSON errors, one --listen form, ports checked everywhere (no root)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from vnetdiag.cli import COMMANDS
from vnetdiag.cli.main import build_parser, main
from vnetdiag.cli.options import split_host_port
from vnetdiag.errors import UsageError


def _parse(argv):
    from vnetdiag.cli.main import _pick_command

    return build_parser(_pick_command(argv)).parse_args(argv)


@pytest.mark.parametrize("argv", [["--json", "inventory"], ["inventory", "--json"],
                                  ["--json", "lab", "status"], ["lab", "status", "--json"],
                                  ["trace", "--json", "report", "f"], ["--json", "trace", "report", "f"]])
def test_json_before_or_after_the_command(argv):
    args = _parse(argv)
    assert args.json is True and args.debug is False and args.wide is False


def test_debug_and_wide_before_the_command_are_kept():
    args = _parse(["--debug", "--wide", "counters", "--all"])
    assert args.debug and args.wide and args.all and not args.json
    args = _parse(["counters", "--debug"])
    assert args.debug and not args.wide


def _walk(parser, path=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))
        else:
            yield path, action, parser


def test_every_option_has_help_and_shows_its_default():
    missing, no_default = [], []
    for command in COMMANDS:
        for path, action, parser in _walk(build_parser(command)):
            if not path or action.help is argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            where = f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}"
            if not (action.help or "").strip():
                missing.append(where)
                continue
            text = parser._get_formatter()._get_help_string(action)
            if action.option_strings and "default" not in text:
                no_default.append(where)
    assert not missing, f"options without help: {missing}"
    assert not no_default, f"options whose help shows no default: {no_default}"


def test_top_level_help_lists_every_command_on_one_line(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "module" not in text.split("commands:")[0]  # a description, not a docstring
    lines = text.splitlines()
    for name, (_module, summary) in COMMANDS.items():
        assert any(line.split() [:1] == [name] and line.strip().endswith(summary) for line in lines), name


def _command_help(name: str) -> str:
    return " ".join(build_parser(name)._subparsers._group_actions[0].choices[name].format_help().split())


def test_help_shows_a_default_once_and_hides_old_spellings():
    probe = _command_help("probe")
    assert "measured seconds (default: 10)" in probe
    assert "view is shown too) (default: none)" in probe and "(default: 7735)" in probe
    assert probe.count("default") == probe.count("(default") + probe.count("; default:")
    assert "--slow-ms SLOW_MS transactions slower than this are examined with TCP_INFO (default 10) " in probe
    serve = _command_help("serve")
    assert "--listen ADDR:PORT" in serve and "--bind" not in serve


def test_json_error_document_on_stdout(capsys):
    assert main(["--json", "inventory", "--no-such-option"]) == 2
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc == {"schema": "vnetdiag.error/1", "error": "unrecognized arguments: --no-such-option",
                   "hint": "vnetdiag inventory --help", "exit_status": 2}
    assert captured.err.startswith("vnetdiag: unrecognized arguments")


def test_without_json_an_error_is_one_line_on_stderr_only(capsys):
    assert main(["serve", "--port", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "1-65535" in captured.err


@pytest.mark.parametrize("argv", [
    ["serve", "--port", "0"], ["serve", "--port", "65536"], ["serve", "--listen", "127.0.0.1:0"],
    ["serve", "--listen", "127.0.0.1"], ["probe", "127.0.0.1", "--port", "99999"], ["probe", "127.0.0.1:0"],
    ["probe", "[::1]:70000"], ["probe", ":7735"], ["export", "--listen", "127.0.0.1:65536"],
    ["export", "--listen", "nowhere"], ["watch", "--listen", "127.0.0.1:x"],
    ["serve", "--listen", "127.0.0.1:7000", "--port", "7001"],
])
def test_ports_are_checked_everywhere(argv, capsys):
    assert main(["--json", *argv]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["exit_status"] == 2 and doc["error"]


def test_serve_listen_and_the_old_spelling():
    from vnetdiag.cli.serve import listen_of

    assert listen_of(_parse(["serve", "--listen", "0.0.0.0:7000"])) == ("0.0.0.0", 7000)
    assert listen_of(_parse(["serve", "--listen", "[::1]:7000"])) == ("::1", 7000)
    assert listen_of(_parse(["serve"])) == ("127.0.0.1", 7735)
    assert listen_of(_parse(["serve", "--bind", "10.1.1.1", "--port", "7001"])) == ("10.1.1.1", 7001)


@pytest.mark.parametrize(("target", "host", "port"), [
    ("127.0.0.1:5000", "127.0.0.1", 5000), ("127.0.0.1", "127.0.0.1", 7735), ("vm3", "vm3", 7735),
    ("vm3:7000", "vm3", 7000), ("::1", "::1", 7735), ("[::1]:5000", "::1", 5000), ("[fe80::1]", "fe80::1", 7735),
    ("example.org:80", "example.org", 80)])
def test_probe_target_host_port(target, host, port):
    assert split_host_port(target, 7735) == (host, port)


@pytest.mark.parametrize("target", ["127.0.0.1:", "127.0.0.1:abc", "[::1", "[::1]5000", ":5000", "h:65536"])
def test_probe_target_errors(target):
    with pytest.raises(UsageError):
        split_host_port(target, 7735)


def test_global_json_before_the_command_prints_json_in_a_real_process():
    r = subprocess.run([sys.executable, "-m", "vnetdiag.cli.main", "--json", "inventory"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["schema"] == "vnetdiag.inventory/1"
