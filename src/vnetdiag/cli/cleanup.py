"""vnetdiag cleanup: remove everything vnetdiag left in the kernel."""

from __future__ import annotations

from vnetdiag.system.cleanup import cleanup
from vnetdiag.system.privileges import require_root


def configure(parser, common) -> None:
    parser.epilog = ("Replays the journals of dead vnetdiag processes and of labs, then sweeps lab "
                     "namespaces, lab backends and ftrace instances by name.")


def run(args, out) -> int:
    require_root("cleanup")
    report = cleanup()
    if out.json_mode:
        out.document(report.document())
    else:
        for owner in report.undone:
            out.console.print(f"undone: {owner}")
        for what in report.removed:
            out.console.print(f"removed: {what}")
        for owner in report.skipped:
            out.console.print(f"left alone (its process is running): {owner}")
        for failure in report.failures:
            out.console.print(f"[red]could not undo[/red]: {failure}")
        if not (report.undone or report.removed or report.failures):
            out.console.print("nothing to clean up")
    return 3 if report.failures else 0
