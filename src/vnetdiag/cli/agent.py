"""vnetdiag agent: answer the fleet protocol on stdin/stdout (started by the coordinator over ssh)."""

from __future__ import annotations

import os
import sys


def configure(parser, common) -> None:
    parser.add_argument("--netns", action="append", default=[], metavar="GLOB",
                        help="answer only for these namespaces (names, globs, every namespace form; repeatable; "
                             "default: every namespace)")


def run(args, out) -> int:
    from vnetdiag.fleet.agent import Scope, protocol_streams, serve
    from vnetdiag.system.privileges import require_root

    require_root("agent")
    scope = Scope(args.netns)  # bad patterns are a usage error before the hello
    rx, tx = protocol_streams()
    status = serve(scope, rx, tx)
    # Everything is stopped; leave now rather than let interpreter shutdown
    # wait on the thread still blocked reading stdin.
    sys.stderr.flush()
    os._exit(status)
