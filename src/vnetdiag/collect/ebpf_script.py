"""The bpftrace program of the eBPF drop backend, generated for this kernel.

Per kfree_skb it always does the cheap part: namespace inode and ifindex of
skb->dev (or of the socket when there is no device) and one per-CPU count per
(netns, ifindex, reason, location). It then reads the packet's headers from
``skb->head + skb->network_header`` (IPv4 options and up to three IPv6
extension headers skipped by their lengths) and, for UDP to a VXLAN port,
the inner Ethernet + IP + L4 headers. A packet matching the filter (on its
outer or its inner headers) is streamed as one ``printf`` line, up to
``max_records``; of the others, the first ``sample`` are streamed too.

What the script needs from this kernel comes from this kernel (``RingLayout``):
the FULL_RING value (tracefs format file); the address of ``tap_handle_frame``
(kallsyms) to know a macvtap by its rx handler and the offsets of
``tap_dev.taps`` and ``tap_queue.ring`` (BTF; bpftrace 0.17 does not see that
member); the address of ``tun_net_xmit`` to know a tun/tap device by its
``ndo_start_xmit`` and the offsets of ``net_device.priv`` (netdev_priv),
``tun_struct.tfiles`` and ``tun_file.tx_ring``.

Output line (all numbers decimal; see ``collect/ebpf_drops.parse_record``):

    D ts cpu netns ifindex iif reason location ethertype matched
      <outer: hdr sa sb da db seq> <inner: hdr sa sb da db seq> <ring: pc tsz qb> name

``hdr`` packs version | proto << 8 | tcp flags << 16 | sport << 32 | dport << 48;
``sa sb`` are the source address as two 64-bit little-endian loads (IPv4: sa
only), ``da db`` the destination; ``pc`` = producer | consumer_head << 32,
``tsz`` = consumer_tail | size << 32, ``qb`` = queue | busy << 16 | valid << 17.
"""

from __future__ import annotations

from dataclasses import dataclass

_TAIL_HDRS = (0, 43, 60)  # hop-by-hop, routing, destination options: length in 8-byte units after the first 8
_FRAG = 44
MAX_HEAD_BYTES = 128
"""One 8-byte load per word, all in one printf: more would not fit BPF's stack."""


@dataclass(frozen=True, kw_only=True)
class RingLayout:
    """Where the ptr_ring of a FULL_RING drop is, for the two drivers that drop with it.

    A driver whose fields are None (not in this kernel's kallsyms or BTF) is
    left out of the script; its FULL_RING drops still count, without a ring."""

    full_ring_reason: int
    macvtap_handler_addr: int | None = None
    tap_dev_taps_offset: int | None = None
    tap_queue_ring_offset: int | None = None
    tun_xmit_addr: int | None = None
    netdev_priv_offset: int | None = None
    tun_tfiles_offset: int | None = None
    tun_file_tx_ring_offset: int | None = None

    @property
    def has_macvtap(self) -> bool:
        return None not in (self.macvtap_handler_addr, self.tap_dev_taps_offset, self.tap_queue_ring_offset)

    @property
    def has_tun(self) -> bool:
        return None not in (self.tun_xmit_addr, self.netdev_priv_offset, self.tun_tfiles_offset,
                            self.tun_file_tx_ring_offset)


@dataclass(frozen=True, kw_only=True)
class ScriptParams:
    predicate_outer: str | None
    predicate_inner: str | None
    vxlan_ports: tuple[int, ...] = (4789,)
    max_records: int = 100_000
    sample: int = 200
    rings: RingLayout | None = None
    """None: FULL_RING drops carry no ring occupancy (the kernel lacks what it needs)."""
    count_interval_ms: int = 1000
    """How often the in-kernel counts are printed (what snapshots between prints see)."""
    head_bytes: int = 0
    """With > 0 (a multiple of 8, at most MAX_HEAD_BYTES): each streamed record is
    followed by a ``B`` line with the packet's first bytes (see ``_head``); 0 keeps
    the default path free of those loads."""


def _flow(p: str, nh: str) -> str:
    """Statements that parse the IP header at address ``nh`` into $<p>h/sa/sb/da/db/seq.

    Few loads on purpose: each is a bpf_probe_read with its own stack slot,
    and the program must fit BPF's 512-byte stack. One 8-byte load gives
    version, IHL and the IPv6 next header; one at L4 gives both ports and
    the TCP sequence number."""
    ext = "".join(
        f"      if ($p == {t}) {{ $x = (uint64)*(uint16 *)$l4; $p = $x & 0xff; $l4 = $l4 + (($x >> 8) + 1) * 8; }}\n"
        for t in _TAIL_HDRS)
    body = """\
    $nh = %(nh)s;
    $w = *(uint64 *)$nh;
    $v = ($w >> 4) & 0xf; $p = (uint64)0; $l4 = (uint64)0; $sp = (uint64)0; $dp = (uint64)0; $fl = (uint64)0;
    if ($v == 4) {
      $x = ($w >> 48) & 0xff1f;  // fragment offset: a later fragment has no L4 header
      $l4 = $nh + ($w & 0xf) * 4;
      $w = *(uint64 *)($nh + 8);
      $p = ($w >> 8) & 0xff;
      $%(p)ssa = $w >> 32;
      $%(p)sda = (uint64)*(uint32 *)($nh + 16);
    }
    if ($v == 6) {
      $p = ($w >> 48) & 0xff;
      $%(p)ssa = *(uint64 *)($nh + 8);
      $%(p)ssb = *(uint64 *)($nh + 16);
      $%(p)sda = *(uint64 *)($nh + 24);
      $%(p)sdb = *(uint64 *)($nh + 32);
      $l4 = $nh + 40;
""" + ext + ext + ext + f"""\
      $x = (uint64)0;
      if ($p == {_FRAG}) {{ $x = (uint64)*(uint16 *)($l4 + 2) & 0xf8ff; $p = (uint64)*(uint8 *)$l4; $l4 = $l4 + 8; }}
    }}
    if ($v == 4 || $v == 6) {{
      if (($p == 6 || $p == 17 || $p == 132) && $x == 0) {{
        $w = *(uint64 *)$l4;
        $sp = (($w & 0xff) << 8) | (($w >> 8) & 0xff);
        $dp = ((($w >> 16) & 0xff) << 8) | (($w >> 24) & 0xff);
        $%(p)sseq = $w >> 32;
      }}
      if ($p == 6 && $x == 0) {{ $fl = (uint64)*(uint8 *)($l4 + 13); }}
      $%(p)sh = $v | ($p << 8) | ($fl << 16) | ($sp << 32) | ($dp << 48);
    }}
"""
    return body % {"p": p, "nh": nh}


def _head(n_bytes: int) -> str:
    """The ``B ts cpu from caplen wirelen w0 .. wK`` line after a ``D`` line (same ts and cpu).

    It starts at the MAC header when one is set and is 14 bytes before the
    network header (an Ethernet header), else at the network header of an IP
    packet (``from`` 2: a raw IP link type), else nothing (``from`` 0).
    ``caplen`` stops at the linear data's end (skb->tail); ``wirelen`` is
    skb->len plus what was pulled before skb->data. Words are 8-byte
    little-endian loads, printed in hex: bpftrace 0.17's ``%r`` prints a
    backslash raw, so its output cannot always be decoded, and ``buf`` stops at
    64 bytes unless BPFTRACE_STRLEN is raised for every string."""
    if n_bytes <= 0 or n_bytes % 8 or n_bytes > MAX_HEAD_BYTES:
        raise ValueError(f"head_bytes must be a multiple of 8 in 8..{MAX_HEAD_BYTES}, not {n_bytes}")
    words = n_bytes // 8
    loads = ", ".join(f"*(uint64 *)($st + {8 * k})" for k in range(words))
    return f"""\
    $mh = (uint64)$skb->mac_header; $st = (uint64)0; $from = (uint64)0; $cl = (uint64)0; $wl = (uint64)0;
    if ($mh != 0xffff && $nhoff != 0xffff && $nhoff - $mh == 14) {{ $st = (uint64)$skb->head + $mh; $from = 1; }}
    else {{ if ($nhoff != 0xffff && ($eth == 0x800 || $eth == 0x86dd)) {{ $st = (uint64)$skb->head + $nhoff; $from = 2; }} }}
    if ($st != 0) {{
      $x = (uint64)$skb->head + (uint64)$skb->tail;
      if ($x > $st) {{ $cl = $x - $st; }}
      if ($cl > {n_bytes}) {{ $cl = {n_bytes}; }}
      $wl = (uint64)$skb->len;
      $x = (uint64)$skb->data;
      if ($x > $st) {{ $wl = $wl + ($x - $st); }}
    }}
    printf("B %llu %u %llu %llu %llu{" %llx" * words}\\n", $t, cpu, $from, $cl, $wl, {loads});
"""


def _zero(p: str) -> str:
    return "  " + " ".join(f"${p}{n} = (uint64)0;" for n in ("h", "sa", "sb", "da", "db", "seq")) + "\n"


def _ring(lay: RingLayout) -> str:
    """Statements that set $pc/$tsz/$qb from the ring a FULL_RING drop found full.

    macvtap (tap_handle_frame, rx side): the queue is picked as tap_get_queue
    does, by the flow hash, else by the recorded rx queue. tun/tap
    (tun_net_xmit, tx side): the queue is skb->queue_mapping, the one the
    driver itself indexes tfiles with."""
    find = ""
    if lay.has_macvtap:
        find += f"""\
    if ((uint64)$dev->rx_handler == (uint64){lay.macvtap_handler_addr:#x}) {{
      $tap = (struct tap_dev *)$dev->rx_handler_data;
      $nq = (uint64)$tap->numvtaps;
      if ($nq > 1) {{
        if ($skb->hash != 0) {{ $qi = (uint64)$skb->hash % $nq; }}
        else {{ if ($skb->queue_mapping != 0) {{ $qi = ((uint64)$skb->queue_mapping - 1) % $nq; }} }}
      }}
      $q = (struct tap_queue *)*(uint64 *)((uint64)$tap + {lay.tap_dev_taps_offset} + 8 * $qi);
      if ($q != 0) {{ $rp = (uint64)$q + {lay.tap_queue_ring_offset}; $qi = (uint64)$q->queue_index; }}
    }}
"""
    if lay.has_tun:
        find += f"""\
    if ((uint64)$dev->netdev_ops->ndo_start_xmit == (uint64){lay.tun_xmit_addr:#x}) {{
      $qi = (uint64)$skb->queue_mapping;
      $x = *(uint64 *)((uint64)$dev + {lay.netdev_priv_offset} + {lay.tun_tfiles_offset} + 8 * $qi);
      if ($x != 0) {{ $rp = $x + {lay.tun_file_tx_ring_offset}; }}
    }}
"""
    if not find:
        return ""
    return f"""\
  if (args->reason == {lay.full_ring_reason} && $dev != 0) {{
    $rp = (uint64)0; $qi = (uint64)0;
{find}\
    if ($rp != 0) {{
      $r = (struct ptr_ring *)$rp;
      $busy = (uint64)(*(uint64 *)((uint64)$r->queue + 8 * (uint64)$r->producer) != 0);
      $pc = (uint64)(uint32)$r->producer | ((uint64)(uint32)$r->consumer_head << 32);
      $tsz = (uint64)(uint32)$r->consumer_tail | ((uint64)(uint32)$r->size << 32);
      $qb = $qi | ($busy << 16) | ((uint64)1 << 17);
    }}
  }}
"""


def generate(params: ScriptParams) -> str:
    vx = " || ".join(f"$dp == {port}" for port in params.vxlan_ports) or "0"
    # The inner headers only count when there are some ("not tcp" must not match every plain packet).
    preds = [params.predicate_outer, f"$ih != 0 && ({params.predicate_inner})" if params.predicate_inner else None]
    match = " || ".join(f"({p})" for p in preds if p) or "0"
    ring = _ring(params.rings) if params.rings is not None else ""
    return f"""\
// generated by vnetdiag (collect/ebpf_script.py)
BEGIN {{ printf("T %llu\\n", nsecs); }}

tracepoint:skb:kfree_skb
{{
  $skb = (struct sk_buff *)args->skbaddr;
  $dev = $skb->dev;
  $ns = (uint64)0; $ifi = (uint64)0;
  if ($dev != 0) {{ $ns = (uint64)$dev->nd_net.net->ns.inum; $ifi = (uint64)$dev->ifindex; }}
  else {{ if ($skb->sk != 0) {{ $ns = (uint64)$skb->sk->__sk_common.skc_net.net->ns.inum; }} }}
  if ($ns == 0 && args->rx_sk != 0) {{ $ns = (uint64)((struct sock *)args->rx_sk)->__sk_common.skc_net.net->ns.inum; }}
  if ($ns == 0 && ($skb->_skb_refdst & ~(uint64)1) != 0) {{  // the route's device (bit 0 is the noref flag)
    $ns = (uint64)((struct dst_entry *)($skb->_skb_refdst & ~(uint64)1))->dev->nd_net.net->ns.inum;
  }}
  @drops[$ns, $ifi, args->reason, args->location] = count();

{_zero("o")}{_zero("i")}\
  $x = (uint64)0;
  $nhoff = (uint64)$skb->network_header;
  $eth = (uint64)args->protocol;
  // 0xffff: never set; 0: a fresh skb's default (unix sockets, ...), nothing IP there
  if ($nhoff != 0xffff && $nhoff != 0 && ($eth == 0 || $eth == 0x800 || $eth == 0x86dd)) {{
{_flow("o", "(uint64)$skb->head + $nhoff")}\
    if ($oh != 0 && $p == 17 && ({vx})) {{
      if ((*(uint8 *)($l4 + 8)) & 0x08) {{
        $x = (uint64)*(uint16 *)($l4 + 28);
        if ($x == 0x0008 || $x == 0xdd86) {{
  {_flow("i", "$l4 + 30")}\
        }}
      }}
    }}
  }}
  $m = (uint64)({match});
  $emit = (uint64)0;
  if ($m) {{ if (@nrec < {params.max_records}) {{ @nrec = @nrec + 1; $emit = 1; }} }}
  else {{ if (@nsample < {params.sample}) {{ @nsample = @nsample + 1; $emit = 1; }} }}
  if ($emit) {{
    $t = nsecs;
    $pc = (uint64)0; $tsz = (uint64)0; $qb = (uint64)0;
{ring}\
    printf("D %llu %u %llu %llu %d %u{" %llu" * 18} %s\\n",
      $t, cpu, $ns, $ifi, $skb->skb_iif, args->reason, (uint64)args->location, $eth, $m,
      $oh, $osa, $osb, $oda, $odb, $oseq, $ih, $isa, $isb, $ida, $idb, $iseq, $pc, $tsz, $qb, $dev->name);
{_head(params.head_bytes) if params.head_bytes else ""}\
  }}
}}

interval:ms:{params.count_interval_ms} {{ print(@drops); }}

END {{ print(@drops); print(@nrec); print(@nsample); clear(@drops); clear(@nrec); clear(@nsample); }}
"""
