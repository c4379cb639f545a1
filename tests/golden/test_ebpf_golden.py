"""The eBPF drop backend's parsers and filter compiler on recorded bpftrace output
(tests/golden/ebpf/record.py regenerates it on the target kernel). No root needed."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from vnetdiag.collect import ebpf_filter
from vnetdiag.collect.ebpf_drops import combined_filter, parse_counts, parse_record
from vnetdiag.errors import UsageError
from vnetdiag.system import bpftrace, tracefs
from vnetdiag.system.kallsyms import Kallsyms

G = Path(__file__).parent / "ebpf"
B_CLIENT4, B_SERVER4 = "10.203.0.1", "10.203.0.2"


@pytest.fixture(scope="module")
def recorded():
    reasons = tracefs.parse_format((G / "kfree_skb.format").read_text(), system="skb").symbols("reason")
    syms = Kallsyms((G / "kallsyms.txt").read_text())
    msgs = [m for m in map(bpftrace.parse_line, (G / "bpftrace.jsonl").read_text().splitlines()) if m]
    recs = [parse_record(m.data, reasons, syms.symbolize) for m in msgs if m.kind == "printf"]
    return reasons, syms, msgs, [r for r in recs if r is not None]


def _rule_counts(text: str) -> dict[str, int]:
    """'tcp dpt:7201' -> packets, from recorded `iptables -L -v -x -n` output."""
    out = {}
    for line in text.splitlines():
        m = re.search(r"(tcp|udp) dpt:(\d+)", line)
        if m and line.split()[0].isdigit():
            out[f"{m.group(1)} {m.group(2)}"] = int(line.split()[0])
    return out


def test_messages_of_bpftrace_json_output(recorded):
    _, _, msgs, recs = recorded
    kinds = [m.kind for m in msgs]
    assert kinds[0] == "attached_probes" and kinds.count("map") >= 1
    assert msgs[1].kind == "printf" and msgs[1].data.startswith("T ")  # BEGIN: probes are live
    assert len(recs) == json.loads((G / "expected.json").read_text())["records"]
    assert bpftrace.parse_line("WARNING: Addrspace is not set") is None
    for line in (G / "bpftrace.jsonl").read_text().splitlines():  # the printf fast path decodes as JSON does
        if line.strip():
            doc = json.loads(line)
            assert bpftrace.parse_line(line) == bpftrace.Message(kind=doc["type"], data=doc["data"])
    quoted = json.dumps({"type": "printf", "data": 'D "x"\n'})
    assert bpftrace.parse_line(quoted).data == 'D "x"\n'
    assert bpftrace.map_items({"@n": 3}) == {"@n": {(): 3}}


def test_records_flows_equal_the_rules_that_dropped_them(recorded):
    _, _, _, recs = recorded
    exp = json.loads((G / "expected.json").read_text())
    v4, v6 = _rule_counts(exp["rules"]["iptables"]), _rule_counts(exp["rules"]["ip6tables"])
    for version, counts, client, server in ((4, v4, B_CLIENT4, B_SERVER4), (6, v6, "fd00:203::1", "fd00:203::2")):
        for key, n in counts.items():
            proto, port = key.split()
            if port == "4789":
                continue
            got = [r for r in recs if r.matched and r.outer and r.outer.ip_version == version
                   and r.outer.dport == int(port)]
            assert len(got) == n, (version, key)
            assert {r.outer.five_tuple for r in got} == \
                {({"tcp": 6, "udp": 17}[proto], client, 40003 if proto == "tcp" else 40001, server, int(port))}
            assert {(r.reason, r.location.split("+")[0], r.device) for r in got} == \
                {("NETFILTER_DROP", "nft_do_chain", "ub")}
            if proto == "tcp":
                assert all(r.outer.tcp_flags == 0x02 for r in got)


def test_vxlan_records_carry_the_inner_flow(recorded):
    _, _, _, recs = recorded
    vx = [r for r in recs if r.outer and r.outer.dport == 4789]
    assert len(vx) == _rule_counts(json.loads((G / "expected.json").read_text())["rules"]["iptables"])["udp 4789"]
    assert len(vx) == 2 and all(r.matched for r in vx)
    assert {r.inner.five_tuple for r in vx} == {(17, "10.204.0.1", 40010, "10.204.0.2", 7301)}
    assert {(r.outer.src, r.outer.dst, r.outer.proto) for r in vx} == {(B_CLIENT4, B_SERVER4, 17)}


def test_counts_group_by_function_and_agree_with_records(recorded):
    reasons, syms, msgs, recs = recorded
    last = [m for m in msgs if m.kind == "map" and "@drops" in m.data][-1]
    tallies = parse_counts(last.data, reasons, syms.function)
    [(b, ifindex)] = {(r.netns_inode, r.ifindex) for r in recs if r.matched and r.device == "ub"}
    nf = [t for t in tallies if t.netns_inode == b and t.reason == "NETFILTER_DROP"]
    assert [(t.ifindex, t.location) for t in nf] == [(ifindex, "nft_do_chain")]
    rules = json.loads((G / "expected.json").read_text())["rules"]
    assert nf[0].count == sum(_rule_counts(rules["iptables"]).values()) + sum(_rule_counts(rules["ip6tables"]).values())
    assert nf[0].count == sum(1 for r in recs if r.netns_inode == b and r.reason == "NETFILTER_DROP")


def test_timestamps_are_ordered_after_begin(recorded):
    _, _, msgs, recs = recorded
    begin = int(msgs[1].data.split()[1])
    assert all(r.ts_ns > begin for r in recs)


# -- the filter compiler


def _py(expr: str) -> str:
    """A compiled bpftrace predicate as a Python expression (same operators, C spelling)."""
    return re.sub(r"!(?!=)", " not ", expr.replace("&&", " and ").replace("||", " or ")).replace("$", "v_")


def _eval(text: str, recs, prefix="o") -> list[bool]:
    """Evaluate the compiled filter on the recorded records' raw header words."""
    expr = _py(ebpf_filter.compile_filter(text, prefix))
    lines = [json.loads(x)["data"] for x in (G / "bpftrace.jsonl").read_text().splitlines() if '"D ' in x]
    out = []
    for line in lines:
        n = [int(x) for x in line.split()[1:25]]
        base = 9 if prefix == "o" else 15
        env = dict(zip((f"v_{prefix}{k}" for k in ("h", "sa", "sb", "da", "db", "seq")), n[base:base + 6]))
        out.append(bool(eval(expr, {}, env)))  # our own compiler's output
    return out


@pytest.mark.parametrize("text, want", [
    ("udp port 7202", lambda f: f.proto == 17 and 7202 in (f.sport, f.dport)),
    ("tcp and dst port 7201", lambda f: f.proto == 6 and f.dport == 7201),
    ("sport 40001", lambda f: f.proto in (6, 17) and f.sport == 40001),
    ("host fd00:203::2", lambda f: "fd00:203::2" in (f.src, f.dst)),
    ("src host 10.203.0.1 and not udp", lambda f: f.src == "10.203.0.1" and f.proto != 17),
    ("ip6 or (ip && port 4789)", lambda f: f.ip_version == 6 or 4789 in (f.sport, f.dport)),
    ("icmp", lambda f: f.ip_version == 4 and f.proto == 1),
])
def test_compiled_filter_selects_what_its_words_say(recorded, text, want):
    _, _, _, recs = recorded
    got = _eval(text, recs)
    assert got == [r.outer is not None and want(r.outer) for r in recs]
    assert not all(got)
    assert any(got) or text == "icmp"  # the sample of other drops may hold no ICMP


def test_negation_matches_non_ip_packets_too_like_pcap(recorded):
    _, _, _, recs = recorded
    got = _eval("! tcp", recs)
    assert got == [r.outer is None or r.outer.proto != 6 for r in recs]
    assert any(r.outer is None for r in recs) and not all(got)


def test_compiled_filter_on_inner_headers(recorded):
    _, _, _, recs = recorded
    assert _eval("udp port 7301", recs, "i") == [r.inner is not None and r.inner.dport == 7301 for r in recs]


def test_filter_precedence_and_juxtaposition():
    a = ebpf_filter.compile_filter("tcp port 80 or udp")
    b = ebpf_filter.compile_filter("(tcp and port 80) or udp")
    assert a == b
    assert ebpf_filter.compile_filter("") is None


@pytest.mark.parametrize("bad", ["host", "port 70000", "host 10.0.0.300", "tcp and", "(tcp", "tcp)", "src tcp",
                                 "frobnicate", "port x", "udp ; rm"])
def test_bad_filters_are_usage_errors(bad):
    with pytest.raises(UsageError) as e:
        ebpf_filter.compile_filter(bad)
    assert e.value.hint


def test_probe_flows_match_both_directions(recorded):
    _, _, _, recs = recorded
    text = combined_filter(None, [(6, B_CLIENT4, 40003, B_SERVER4, 7201)])
    five = (6, B_CLIENT4, 40003, B_SERVER4, 7201)
    back = (6, B_SERVER4, 7201, B_CLIENT4, 40003)
    assert _eval(text, recs) == [r.outer is not None and r.outer.five_tuple in (five, back) for r in recs]
    assert any(_eval(text, recs))
    reverse = combined_filter(None, [{"proto": 6, "src": B_SERVER4, "sport": 7201, "dst": B_CLIENT4,
                                      "dport": 40003}])
    assert _eval(reverse, recs) == _eval(text, recs)


def test_script_owner_from_a_bpftrace_command_line():
    cmd = b"/usr/bin/bpftrace\0-f\0json\0/run/vnetdiag/bpftrace/vnetdiag-bpftrace-4242-1.bt\0"
    assert bpftrace.script_owner(cmd) == 4242
    assert bpftrace.script_owner(b"/usr/bin/bpftrace\0-e\0BEGIN{}\0") is None


def test_recorded_script_reads_the_ring_through_btf_offsets():
    script = (G / "script.bt").read_text()
    assert "->ring" not in script  # bpftrace 0.17 loses tap_queue.ring; the offset comes from BTF
    assert "tracepoint:skb:kfree_skb" in script and "@drops[$ns, $ifi, args->reason, args->location]" in script


def test_lost_records_are_summed_from_bpftrace_lost_events():
    """lost_events.jsonl: bpftrace with a one-page perf buffer flooded by printf
    (BPFTRACE_PERF_RB_PAGES=1, a printf per syscall), its non-printf lines."""
    from vnetdiag.collect.ebpf_drops import EbpfDropSource

    src = EbpfDropSource(filter="tcp")
    src.reasons, src.syms = {}, Kallsyms("")
    lines = (G / "lost_events.jsonl").read_text().splitlines()
    for m in map(bpftrace.parse_line, lines):
        src._on_message(m)
    want = sum(json.loads(x)["data"]["events"] for x in lines if '"lost_events"' in x)
    assert src.lost == want > 0
    assert src.snapshot().loss.lost == want


def test_generated_script_guards_the_inner_predicate_and_unset_headers():
    from vnetdiag.collect.ebpf_script import ScriptParams, generate

    text = "not tcp"
    script = generate(ScriptParams(predicate_outer=ebpf_filter.compile_filter(text, "o"),
                                   predicate_inner=ebpf_filter.compile_filter(text, "i"), vxlan_ports=(4789, 8472)))
    assert "($ih != 0 && (!((($ih >> 8) & 0xff) == 6)))" in script
    assert "$nhoff != 0xffff && $nhoff != 0" in script
    assert "$dp == 4789 || $dp == 8472" in script
    assert "struct tap_dev" not in script  # no ring code without the kernel's offsets
    assert generate(ScriptParams(predicate_outer=None, predicate_inner=None)).count("$m = (uint64)(0);") == 1


def test_ring_code_is_there_for_each_driver_the_kernel_describes_and_only_for_it():
    """The offsets are this kernel's (BTF) and the addresses its kallsyms': a
    driver with a missing piece is left out, not guessed."""
    from vnetdiag.collect.ebpf_script import RingLayout, ScriptParams, generate
    from vnetdiag.system import btf

    if btf.member_offset("tun_file", "tx_ring") is None:
        pytest.skip("this kernel's BTF has no struct tun_file")
    both = RingLayout(full_ring_reason=5, macvtap_handler_addr=0xffffffff81e04490,
                      tap_dev_taps_offset=btf.member_offset("tap_dev", "taps"),
                      tap_queue_ring_offset=btf.member_offset("tap_queue", "ring"),
                      tun_xmit_addr=0xffffffff81dfb900, netdev_priv_offset=btf.member_offset("net_device", "priv"),
                      tun_tfiles_offset=btf.member_offset("tun_struct", "tfiles"),
                      tun_file_tx_ring_offset=btf.member_offset("tun_file", "tx_ring"))
    script = generate(ScriptParams(predicate_outer=None, predicate_inner=None, rings=both))
    assert "ndo_start_xmit == (uint64)0xffffffff81dfb900" in script
    assert f"$dev + {both.netdev_priv_offset} + {both.tun_tfiles_offset} + 8 * $qi" in script
    assert f"$rp = $x + {both.tun_file_tx_ring_offset}" in script
    assert "rx_handler == (uint64)0xffffffff81e04490" in script
    no_tun = generate(ScriptParams(predicate_outer=None, predicate_inner=None,
                                   rings=dataclasses.replace(both, tun_file_tx_ring_offset=None)))
    assert "ndo_start_xmit" not in no_tun and "rx_handler ==" in no_tun
    neither = generate(ScriptParams(predicate_outer=None, predicate_inner=None,
                                    rings=dataclasses.replace(both, tun_xmit_addr=None, macvtap_handler_addr=None)))
    assert "struct ptr_ring" not in neither
