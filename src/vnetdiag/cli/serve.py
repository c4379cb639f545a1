"""vnetdiag serve: the probe server (bounded, token-guarded, loopback by default)."""

from __future__ import annotations

import argparse
import os
import signal
from dataclasses import asdict


def configure(parser: argparse.ArgumentParser, common) -> None:
    parser.add_argument("--bind", default="127.0.0.1", metavar="ADDR",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 only if you mean it)")
    parser.add_argument("--port", type=int, default=7735, help="TCP and UDP port (default 7735)")
    parser.add_argument("--netns", metavar="NS", help="listen inside this network namespace (or lab node: vm3)")
    parser.add_argument("--token", help="clients must prove this shared token (default: $VNETDIAG_PROBE_TOKEN)")
    parser.add_argument("--max-connections", type=int, default=4096)
    parser.add_argument("--max-message-bytes", type=int, default=1 << 20,
                        help="largest request and response (default 1 MiB)")
    parser.add_argument("--max-duration", type=int, default=3600, metavar="S", help="longest session")


def _stop_on_term(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the server as Ctrl-C does: cleanly, with its summary


def run(args, out) -> int:
    from vnetdiag.errors import UsageError
    from vnetdiag.probe.protocol import Limits
    from vnetdiag.probe.server import Server

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: not a port number")
    if args.max_connections < 1 or args.max_message_bytes < 1 or args.max_duration < 1:
        raise UsageError("--max-connections, --max-message-bytes and --max-duration must be positive")
    # Ctrl-C must reach us even when started from a shell that ignores SIGINT in
    # background jobs: interrupting is how partial results are asked for.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop_on_term)
    token = args.token if args.token is not None else os.environ.get("VNETDIAG_PROBE_TOKEN")
    from vnetdiag.cli.probe import resolve_netns

    server = Server(bind=args.bind, port=args.port, netns=resolve_netns(args.netns), token=token,
                    limits=Limits(max_connections=args.max_connections, max_message_bytes=args.max_message_bytes,
                                  max_duration_s=args.max_duration))
    host, port = server.start()
    where = f" in netns {args.netns}" if args.netns else ""
    out.info(f"vnetdiag serve: listening on {host} port {port} (tcp and udp){where}"
             f"{', token required' if token else ''}; Ctrl-C to stop")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    stats = server.stats()
    if out.json_mode:
        out.document({"schema": "vnetdiag.serve/1", "bind": host, "port": port, "netns": args.netns,
                      **asdict(stats)})
    else:
        out.info(f"vnetdiag serve: stopped after {stats.accepted} connections "
                 f"({stats.rejected} refused at the limit, {stats.protocol_errors} protocol errors)")
    return 0
