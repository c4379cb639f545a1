"""Entry point: parse, dispatch to one command module, map exceptions to exit codes.

Exit statuses: 0 ok; 1 the command found a problem (verdict commands); 2 usage
or bad input; 3 missing privilege or kernel feature; 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from vnetdiag import __version__
from vnetdiag.cli import COMMANDS
from vnetdiag.cli.output import Output
from vnetdiag.errors import Interrupted, VnetdiagError


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the result document as JSON")
    common.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return common


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other error
        self.exit(2, f"vnetdiag: error: {message} (hint: {self.prog} --help)\n")


def build_parser(command: str | None) -> argparse.ArgumentParser:
    common = _common_options()
    parser = _Parser(prog="vnetdiag", description=__doc__, parents=[common],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"vnetdiag {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module_name, summary) in COMMANDS.items():
        p = sub.add_parser(name, help=summary, description=summary, parents=[common])
        if name == command:
            # Import only the command being run; its options are its own business.
            module = importlib.import_module(module_name)
            module.configure(p, common)
            p.set_defaults(_module=module)
    return parser


def _pick_command(argv: list[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_pick_command(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    out = Output(json_mode=args.json)
    try:
        return int(args._module.run(args, out) or 0)
    except KeyboardInterrupt:
        out.info("vnetdiag: interrupted")
        return Interrupted.exit_status
    except VnetdiagError as exc:
        if args.debug:
            traceback.print_exc()
        out.info(f"vnetdiag: {exc}")
        return exc.exit_status
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - last line of defence: still one line
        if args.debug:
            traceback.print_exc()
        out.info(f"vnetdiag: internal error: {type(exc).__name__}: {exc} (hint: rerun with --debug and report it)")
        return 70


if __name__ == "__main__":
    sys.exit(main())
