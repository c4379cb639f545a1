"""vnetdiag serve: the probe server (bounded, token-guarded, loopback by default)."""

from __future__ import annotations

import argparse
import os
import signal

from vnetdiag.cli.options import listen_address, port_number


def configure(parser: argparse.ArgumentParser, common) -> None:
    parser.add_argument("--listen", type=listen_address, default=None, metavar="ADDR:PORT",
                        help="address and TCP/UDP port to listen on (default 127.0.0.1:7735; "
                             "0.0.0.0:PORT only if you mean it)")
    # The old spelling, kept working but no longer shown.
    parser.add_argument("--bind", default=None, metavar="ADDR", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=port_number, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--netns", metavar="NS",
                        help="listen inside this network namespace (or lab node: vm3; default: this process's)")
    parser.add_argument("--token", help="clients must prove this shared token (default: $VNETDIAG_PROBE_TOKEN)")
    parser.add_argument("--max-connections", type=int, default=4096, help="connections served at once")
    parser.add_argument("--max-message-bytes", type=int, default=1 << 20,
                        help="largest request and response (default 1 MiB)")
    parser.add_argument("--max-duration", type=int, default=3600, metavar="S", help="longest session in seconds")


def listen_of(args) -> tuple[str, int]:
    """--listen ADDR:PORT, or the older --bind ADDR / --port N (not both spellings)."""
    from vnetdiag.errors import UsageError
    from vnetdiag.watch.config import parse_listen

    if args.listen is not None:
        if args.bind is not None or args.port is not None:
            raise UsageError("--listen and --bind/--port together", hint="use --listen ADDR:PORT alone")
        return parse_listen(args.listen)
    return args.bind or "127.0.0.1", 7735 if args.port is None else args.port


def _stop_on_term(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the server as Ctrl-C does: cleanly, with its summary


def run(args, out) -> int:
    from vnetdiag.errors import UsageError
    from vnetdiag.probe.protocol import Limits
    from vnetdiag.probe.server import Server

    bind, port = listen_of(args)
    if args.max_connections < 1 or args.max_message_bytes < 1 or args.max_duration < 1:
        raise UsageError("--max-connections, --max-message-bytes and --max-duration must be positive")
    # Ctrl-C must reach us even when started from a shell that ignores SIGINT in
    # background jobs: interrupting is how partial results are asked for.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop_on_term)
    token = args.token if args.token is not None else os.environ.get("VNETDIAG_PROBE_TOKEN")
    from vnetdiag.cli.probe import resolve_netns

    server = Server(bind=bind, port=port, netns=resolve_netns(args.netns), token=token,
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
        out.document(server.document(args.netns))
    else:
        out.info(f"vnetdiag serve: stopped after {stats.accepted} connections "
                 f"({stats.rejected} refused at the limit, {stats.protocol_errors} protocol errors)")
    return 0
