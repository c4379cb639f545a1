"""Entry point: parse, dispatch to one command module, map exceptions to exit codes.

Exit statuses: 0 ok; 1 the command found a problem (verdict commands); 2 usage
or bad input; 3 missing privilege or kernel feature; 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
import traceback

from vnetdiag import __version__
from vnetdiag.cli import COMMANDS
from vnetdiag.cli.output import Output, error_document
from vnetdiag.errors import Interrupted, UsageError, VnetdiagError

DESCRIPTION = ("vnetdiag finds where, and why, packets are lost or delayed in virtualized Linux networks: "
               "the hop (a device in a network namespace), the queue, and the kernel's drop reason, with "
               "counts that match the symptom.")

EPILOG = """\
exit statuses: 0 ok; 1 the command found a problem; 2 usage or bad input;
3 missing privilege or kernel feature; 130 interrupted.
Global options (--json, --debug, --wide) may come before or after the command.
'vnetdiag COMMAND --help' shows a command's options."""

# (flags, help): the options every command takes, before or after its name.
GLOBAL_OPTIONS: tuple[tuple[str, str], ...] = (
    ("--json", "print the result document (and errors) as JSON on stdout"),
    ("--debug", "show tracebacks of errors"),
    ("--wide", "tables at their full width, whatever the terminal or $COLUMNS"),
)


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the text already says it.

    One formatter for every parser, so a command only writes what an option does.
    A flag shows "off" (or "on"); ``None`` is shown as "none" only when the help
    has not explained what happens without the option.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or not action.option_strings:
            return text
        if isinstance(action, argparse._StoreTrueAction):  # noqa: SLF001 - also a command's copy of --json
            return f"{text} (default: off)"
        if isinstance(action, argparse._StoreFalseAction):  # noqa: SLF001
            return f"{text} (default: on)"
        if action.default is argparse.SUPPRESS or isinstance(action, (argparse._VersionAction,  # noqa: SLF001
                                                                      argparse._HelpAction)):  # noqa: SLF001
            return text
        default = action.default
        if default is None or default == []:
            shown = "none"
        elif isinstance(default, float) and default.is_integer():
            shown = f"{default:g}"
        else:
            shown = str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


class _TopFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """The top level's description is a command list: keep its lines."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # one line, exit 2, through the same path as every other error
        raise UsageError(message, hint=f"{self.prog} --help")


def _global_options(*, defaults: bool) -> argparse.ArgumentParser:
    """The top level sets the defaults; a command's copy leaves the value alone
    (SUPPRESS) unless given there, so ``--json`` works on either side of the name."""
    common = argparse.ArgumentParser(add_help=False)
    for flag, text in GLOBAL_OPTIONS:
        common.add_argument(flag, action="store_true", help=text,
                            **({} if defaults else {"default": argparse.SUPPRESS}))
    return common


def command_list() -> str:
    width = max(map(len, COMMANDS))
    return "commands:\n" + "\n".join(f"  {name:<{width}}  {summary}" for name, (_m, summary) in COMMANDS.items())


def build_parser(command: str | None) -> argparse.ArgumentParser:
    common = _global_options(defaults=False)
    parser = _Parser(prog="vnetdiag", description=f"{textwrap.fill(DESCRIPTION, 78)}\n\n{command_list()}", epilog=EPILOG,
                     parents=[_global_options(defaults=True)], formatter_class=_TopFormatter,
                     usage="vnetdiag [--json] [--debug] [--wide] COMMAND [options]")
    parser.add_argument("--version", action="version", version=f"vnetdiag {__version__}")
    # The commands are listed (one line each, unwrapped) in the description above.
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, help=argparse.SUPPRESS)
    for name, (module_name, summary) in COMMANDS.items():
        p = sub.add_parser(name, prog=f"vnetdiag {name}", description=summary, parents=[common])
        if name == command:
            # Import only the command being run; its options are its own business.
            module = importlib.import_module(module_name)
            module.configure(p, common)
            p.set_defaults(_module=module)
    return parser


def _pick_command(argv: list[str]) -> str | None:
    for arg in argv:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def _given(flag: str, argv: list[str]) -> bool:
    """A global flag anywhere before a '--' (for errors raised before parsing finished)."""
    return flag in (argv[:argv.index("--")] if "--" in argv else argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Output(json_mode=_given("--json", argv), wide=_given("--wide", argv))
    debug = _given("--debug", argv)
    command = _pick_command(argv)
    try:
        parser = build_parser(command)
        args = parser.parse_args(argv)
    except VnetdiagError as exc:  # argparse's complaints, and a bad configure()
        if command and exc.hint == "vnetdiag --help":  # leftovers are reported by the top level
            exc.hint = f"vnetdiag {command} --help"
        return _fail(out, exc, debug)
    except SystemExit as exc:  # --help, --version
        return int(exc.code or 0)
    out = Output(json_mode=args.json, wide=args.wide)
    if not getattr(args, "_module", None):
        if args.json:
            return _fail(out, UsageError("no command given", hint="vnetdiag --help"), args.debug)
        parser.print_help()
        return 2
    try:
        return int(args._module.run(args, out) or 0)
    except KeyboardInterrupt:
        return _fail(out, Interrupted("interrupted"), False)
    except VnetdiagError as exc:
        return _fail(out, exc, args.debug)
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - last line of defence: still one line
        if args.debug:
            traceback.print_exc()
        out.error(error_document(f"internal error: {type(exc).__name__}: {exc}",
                                 "rerun with --debug and report it", 70))
        return 70


def _fail(out: Output, exc: VnetdiagError, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    out.error(error_document(exc.message, exc.hint, exc.exit_status))
    return exc.exit_status


if __name__ == "__main__":
    sys.exit(main())
