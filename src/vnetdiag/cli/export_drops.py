"""export --drops: the eBPF tracer's in-kernel drop counts on the same /metrics."""

from __future__ import annotations

from contextlib import ExitStack


def add_options(parser) -> None:
    parser.add_argument("--drops", action="store_true",
                        help="also export vnetdiag_kernel_drops_total{netns,device,reason} from the eBPF drop "
                             "tracer's kernel counts (needs bpftrace; the --netns filter applies)")


def start(args, server, stack: ExitStack, out) -> None:
    """With --drops: start the tracer (counts only, no per-packet records) and
    register its collector on ``server``'s registry; ``stack`` stops it."""
    if not getattr(args, "drops", False):
        return
    from vnetdiag.collect.ebpf_drops import EbpfDropSource
    from vnetdiag.export import drops

    src = EbpfDropSource(sample=0, max_records=0)
    src.start()
    stack.callback(src.stop)
    drops.serve(server.registry, src, args.netns)
    out.info("vnetdiag export: kernel drops counted by eBPF (vnetdiag_kernel_drops_total)")
