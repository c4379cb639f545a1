"""vnetdiag handshake TARGET: round trips a peer's kernel answers, with nothing
of ours running there (a VM's bare guest): TCP SYN -> SYN-ACK/RST, ICMP echo."""

from __future__ import annotations


def configure(parser, common) -> None:
    from vnetdiag.model.handshake import HANDSHAKE_PATTERNS

    parser.add_argument("target", metavar="TARGET", help="an address, or a lab node (vm1, a VM node too)")
    parser.add_argument("--pattern", choices=HANDSHAKE_PATTERNS, default="tcp-syn",
                        help="tcp-syn: time connect() (SYN-ACK from an open port, RST from a closed one); "
                             "icmp-echo: echo request/reply (default: tcp-syn)")
    parser.add_argument("--port", type=int, default=7, help="tcp-syn: TCP port (default 7, the lab guests' echo)")
    parser.add_argument("--count", type=int, default=100, help="attempts (default 100)")
    parser.add_argument("--interval", type=float, default=0.01, metavar="S",
                        help="one attempt every S seconds; 0: back to back (default 0.01)")
    parser.add_argument("--timeout", type=float, default=3.0, metavar="S",
                        help="an attempt unanswered after S seconds is a timeout (default 3: room for "
                             "one SYN retransmission)")
    parser.add_argument("--netns", metavar="NS", help="probe from this namespace (any form, or a lab node)")


def run(args, out) -> int:
    from vnetdiag.cli.probe import resolve_netns, resolve_target
    from vnetdiag.probe.handshake import run as run_handshake
    from vnetdiag.system.privileges import require_root

    if args.pattern == "icmp-echo" or args.netns:
        require_root("handshake (raw ICMP socket, or entering a namespace)")
    result = run_handshake(resolve_target(args.target), pattern=args.pattern, port=args.port, count=args.count,
                           interval_s=args.interval, timeout_s=args.timeout, netns=resolve_netns(args.netns))
    if out.json_mode:
        out.document(result.as_document())
        return 0 if result.answered else 1
    lat = result.latency
    what = f"{result.target}:{result.port}" if result.port else result.target
    out.console.print(f"{result.pattern} to {what}: {result.attempts} attempts, answers "
                      f"{', '.join(f'{k} {v}' for k, v in sorted(result.answers.items())) or 'none'}, "
                      f"{result.timeouts} timeouts, {result.errors} errors in {result.duration_s:.2f} s",
                      markup=False)
    if lat.count:
        out.console.print("round trip (us): " + "  ".join(f"{p.name} {p.latency_us:.1f}" for p in lat.percentiles),
                          markup=False)
    retrans = {k: v for k, v in result.syn_retransmits.items() if k != "0"}
    if retrans:
        out.console.print("SYN retransmissions implied by the round trip (the kernel's 1 s, 3 s, ... schedule): "
                          + ", ".join(f"{v} attempts x{k}" for k, v in sorted(retrans.items())), markup=False)
    return 0 if result.answered else 1
