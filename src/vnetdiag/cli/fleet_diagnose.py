"""diagnose's HOST:A forms: the options and the dispatch to fleet/diagnose.py.

``vnetdiag diagnose --from HOST:A --to HOST:B`` where HOST is a name of the
``--hosts`` inventory or an ssh destination ``user@host``; kept here so that
cli/diagnose.py only asks whether the endpoints name hosts.
"""

from __future__ import annotations


def add_host_options(parser) -> None:
    parser.add_argument("--hosts", metavar="FILE",
                        help="an Ansible inventory (INI or YAML): --from/--to may then be HOST:NAMESPACE[:ADDRESS]")
    parser.add_argument("--via", action="append", default=[], metavar="HOST",
                        help="hosts between A's and B's that also watch (repeatable; default: every host of --hosts)")


def names_hosts(args) -> bool:
    """True when --from/--to are HOST:A forms (then the fleet diagnose runs)."""
    from vnetdiag.fleet.hosts import load, split_host_endpoint

    if not (args.source and args.target):
        return False
    inventory = load(args.hosts) if getattr(args, "hosts", None) else None
    return any(split_host_endpoint(e, inventory) is not None for e in (args.source, args.target))


def run(args, out) -> int:
    from vnetdiag.fleet.diagnose import diagnose_fleet, document
    from vnetdiag.report import diagnosis as render

    from vnetdiag.errors import UsageError

    if args.streams < 1 or args.duration <= 0:
        raise UsageError("--streams must be at least 1 and --duration positive")
    unsupported = [flag for flag, on in (("--report", args.report), ("--capture", args.capture),
                                         ("--save-bundle", getattr(args, "save_bundle", None))) if on]
    if unsupported:
        raise UsageError(f"{', '.join(unsupported)} not available across hosts yet", hint="drop it, or diagnose on one host")
    result = diagnose_fleet(source=args.source, target=args.target, hosts_file=args.hosts, via=args.via,
                            pattern=args.pattern, streams=args.streams, duration_s=args.duration,
                            request_bytes=args.request_bytes, response_bytes=args.response_bytes,
                            trace=not args.no_trace, backend=getattr(args, "backend", "auto"),
                            progress=lambda m: out.info(f"diagnose: {m}"))
    if out.json_mode:
        out.document(document(result))
    else:
        render.terminal(result, out.console)
        t = result.timings_s
        out.console.print(f"hosts: {', '.join(r.host.name for r in result.hosts)}; agents up in "
                          f"{t.get('connect', 0):.2f} s, window {t.get('window', 0):.2f} s, "
                          f"collect {t.get('collect', 0):.2f} s, total {t.get('total', 0):.2f} s")
    return 1 if result.diagnosis.problem_found else 0
