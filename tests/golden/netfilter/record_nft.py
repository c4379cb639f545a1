"""Re-record the nftables golden inputs (root):

    .venv/bin/python tests/golden/netfilter/record_nft.py [PREFIX [router|mixed|shadow|loss ...]]

Builds three small beds of namespaces (named PREFIX-nft-*, default prefix "hp";
each recorded in an undo journal first and deleted at the end), loads rulesets
and sends traffic that each dropping rule catches, then records:

- nft-router.json / .nft: a native ruleset on a router with a bridge (inet, ip,
  ip6, bridge and netdev families; named and anonymous sets, a named counter,
  a verdict map, reject in several forms, drops at prerouting, ingress, input,
  forward (also through a jump) and output; one dropping rule without a counter)
  as ``nft -j list ruleset`` and, right after, ``nft list ruleset``;
- nft-mixed.*: iptables-nft and ip6tables-nft rules (a policy DROP, an xt
  comment and statistic match) beside a native inet table and an
  iptables-legacy table: ``nft -j``, ``iptables-save -c`` (stdout and stderr),
  ``ip6tables-save -c``, ``iptables-legacy-save -c``;
- nft-loss.json / .nft: random loss with ``numgen`` and a reverse-path check
  with ``fib``, as nft users write them;
- nft-shadow.*: a native table named ``ip filter`` with a set lookup, which
  iptables-nft-save shows as if it were its own (wrongly, as ``-j DROP``).

The beds are quiet (no traffic but what this script sends), so the two reads
of a ruleset agree.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from vnetdiag.system.undo import DeleteNetns, Journal

HERE = Path(__file__).parent
PREFIX = sys.argv[1] if len(sys.argv) > 1 else "hp"

ROUTER_RULESET = """\
table inet fw {
	counter hits {
	}

	set ports {
		type inet_service
		elements = { 22, 2222 }
	}

	set blocked4 {
		type ipv4_addr
		flags interval
		elements = { 10.77.1.9 }
	}

	chain input {
		type filter hook input priority filter; policy accept;
		ct state invalid counter drop
		iifname "to-cl" tcp dport @ports counter drop
		ip saddr @blocked4 counter reject with icmp admin-prohibited
		tcp dport 7777 counter name "hits" drop
		tcp dport 6666 drop
		udp dport { 5000, 5001 } counter reject
		limit rate over 5/second burst 5 packets udp dport 5100 counter drop
		udp dport vmap { 5200 : drop, 5201 : accept }
		counter udp dport 5300 drop
		tcp dport 8080 counter accept
	}

	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "to-cl" oifname "br0" udp dport 9000 counter drop
		meta l4proto tcp oifname "br0" tcp dport 9001 counter reject with tcp reset
		jump fwd_extra
	}

	chain fwd_extra {
		ip daddr 10.77.2.6 udp dport 9002 counter log prefix "hp-fwd " drop
	}

	chain output {
		type filter hook output priority filter; policy accept;
		ip6 daddr fd77:1::2 icmpv6 type echo-request counter drop
		oifname "to-cl" udp dport 9300 counter reject with icmpx admin-prohibited
	}
}
table ip raw4 {
	chain pre {
		type filter hook prerouting priority raw; policy accept;
		ip saddr 10.77.1.2 udp dport 9100 counter drop
	}
}
table ip6 f6 {
	chain in6 {
		type filter hook input priority filter; policy accept;
		icmpv6 type echo-request counter drop
		meta l4proto udp udp dport 9400 counter reject with icmpv6 port-unreachable
	}
}
table bridge br {
	chain brfwd {
		type filter hook forward priority filter; policy accept;
		iifname "to-b1" ether type ip icmp type echo-request counter drop
		ether saddr 02:00:00:00:00:99 counter drop
	}
}
table netdev ing {
	chain ingress_cl {
		type filter hook ingress device "to-cl" priority filter; policy accept;
		udp dport 9200 counter drop
	}
}
"""

MIXED_NATIVE = """\
table inet native {
	chain input {
		type filter hook input priority -10; policy accept;
		udp dport 9995 counter drop
	}
}
"""

LOSS_RULESET = """\
table inet loss {
	chain pre {
		type filter hook prerouting priority raw; policy accept;
		fib saddr . iif oif missing counter drop
		udp dport 9980 numgen random mod 4 0 counter drop
	}
}
"""

SHADOW_RULESET = """\
table ip filter {
	set blocked {
		type ipv4_addr
		elements = { 10.79.1.2 }
	}

	chain INPUT {
		type filter hook input priority filter; policy accept;
		ip saddr @blocked udp dport 9990 counter drop
	}
}
"""

journal = Journal(f"record-nft-{PREFIX}").open()


def sh(*argv: str, ns: str | None = None, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    full = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
    return subprocess.run(full, check=check, capture_output=True, text=True, input=stdin)


def netns(name: str) -> str:
    full = f"{PREFIX}-nft-{name}"
    journal.record(DeleteNetns(name=full))
    sh("ip", "netns", "add", full)
    sh("ip", "link", "set", "lo", "up", ns=full)
    sh("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0", ns=full)
    return full


def veth(a: str, a_dev: str, b: str, b_dev: str) -> None:
    sh("ip", "link", "add", a_dev, "netns", a, "type", "veth", "peer", "name", b_dev, "netns", b)
    sh("ip", "link", "set", a_dev, "up", ns=a)
    sh("ip", "link", "set", b_dev, "up", ns=b)


def addr(ns: str, dev: str, *cidrs: str) -> None:
    for c in cidrs:
        sh("ip", "addr", "add", c, "dev", dev, *(["nodad"] if ":" in c else []), ns=ns)


def send(ns: str, kind: str, dst: str, port: int, count: int = 1, src: str | None = None) -> None:
    """UDP datagrams, or TCP connects (SYNs, with their retransmits for 1.5 s)."""
    code = f"""
import socket
fam = socket.AF_INET6 if ':' in {dst!r} else socket.AF_INET
for _ in range({count}):
    s = socket.socket(fam, socket.SOCK_DGRAM if {kind!r} == 'udp' else socket.SOCK_STREAM)
    s.settimeout(1.5)
    if {src!r}:
        s.bind(({src!r}, 0))
    try:
        s.sendto(b'x' * 20, ({dst!r}, {port})) if {kind!r} == 'udp' else s.connect(({dst!r}, {port}))
    except OSError:
        pass
    s.close()
"""
    sh(sys.executable, "-c", code, ns=ns)


def ping(ns: str, dst: str, count: int, src: str | None = None) -> None:
    sh("ping", "-q", "-c", str(count), "-i", "0.2", "-W", "0.3", *(["-I", src] if src else []), dst, ns=ns,
       check=False)


def record_router() -> None:
    fw, cl, b1, b2 = netns("fw"), netns("cl"), netns("b1"), netns("b2")
    veth(fw, "to-cl", cl, "eth0")
    veth(fw, "to-b1", b1, "eth0")
    veth(fw, "to-b2", b2, "eth0")
    sh("ip", "link", "add", "br0", "type", "bridge", ns=fw)
    for port in ("to-b1", "to-b2"):
        sh("ip", "link", "set", port, "master", "br0", ns=fw)
    sh("ip", "link", "set", "br0", "up", ns=fw)
    addr(fw, "to-cl", "10.77.1.1/24", "fd77:1::1/64")
    addr(fw, "br0", "10.77.2.1/24", "fd77:2::1/64")
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", ns=fw)
    addr(cl, "eth0", "10.77.1.2/24", "10.77.1.9/24", "fd77:1::2/64")
    sh("ip", "route", "add", "default", "via", "10.77.1.1", ns=cl)
    for ns, ip in ((b1, "10.77.2.5/24"), (b2, "10.77.2.6/24")):
        addr(ns, "eth0", ip)
        sh("ip", "route", "add", "default", "via", "10.77.2.1", ns=ns)
    sh("nft", "-f", "-", ns=fw, stdin=ROUTER_RULESET)
    send(cl, "tcp", "10.77.1.1", 22)
    ping(cl, "10.77.1.1", 3, src="10.77.1.9")
    send(cl, "tcp", "10.77.1.1", 7777)
    send(cl, "tcp", "10.77.1.1", 6666)
    send(cl, "udp", "10.77.1.1", 5000, 4)
    send(cl, "udp", "10.77.1.1", 5100, 20)
    send(cl, "udp", "10.77.1.1", 5200, 3)
    send(cl, "udp", "10.77.1.1", 5300, 2)
    send(cl, "tcp", "10.77.1.1", 8080)
    send(cl, "udp", "10.77.2.5", 9000, 5)
    send(cl, "tcp", "10.77.2.5", 9001)
    send(cl, "udp", "10.77.2.6", 9002, 2)
    ping(fw, "fd77:1::2", 3)
    send(fw, "udp", "10.77.1.2", 9300, 2)
    send(cl, "udp", "10.77.1.1", 9100, 3)
    ping(cl, "fd77:1::1", 2)
    send(cl, "udp", "fd77:1::1", 9400)
    ping(b1, "10.77.2.6", 3)
    send(cl, "udp", "10.77.1.1", 9200, 2)
    (HERE / "nft-router.json").write_text(sh("nft", "-j", "list", "ruleset", ns=fw).stdout)
    (HERE / "nft-router.nft").write_text(sh("nft", "list", "ruleset", ns=fw).stdout)


def record_mixed() -> None:
    mx, mc = netns("mx"), netns("mc")
    veth(mx, "to-mc", mc, "eth0")
    addr(mx, "to-mc", "10.78.1.1/24", "fd78:1::1/64")
    addr(mc, "eth0", "10.78.1.2/24", "fd78:1::2/64")
    sh("ip", "link", "add", "side0", "type", "veth", "peer", "name", "side1", ns=mx)  # no dummy module here
    sh("ip", "link", "set", "side0", "up", ns=mx)
    sh("ip", "link", "set", "side1", "up", ns=mx)
    addr(mx, "side0", "10.78.9.1/24")
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=mx)
    sh("ip", "route", "add", "default", "via", "10.78.1.1", ns=mc)
    sh("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "9999", "-m", "comment", "--comment", "hp block",
       "-j", "DROP", ns=mx)
    sh("iptables", "-A", "INPUT", "-p", "udp", "--dport", "9998", "-j", "REJECT", ns=mx)
    sh("iptables", "-A", "INPUT", "-p", "udp", "--dport", "9993", "-j", "ACCEPT", ns=mx)
    sh("iptables", "-P", "FORWARD", "DROP", ns=mx)
    sh("iptables", "-t", "mangle", "-A", "PREROUTING", "-p", "udp", "--dport", "9997", "-m", "statistic",
       "--mode", "nth", "--every", "2", "--packet", "0", "-j", "DROP", ns=mx)
    sh("ip6tables", "-A", "INPUT", "-p", "udp", "--dport", "9996", "-j", "REJECT", ns=mx)
    sh("nft", "-f", "-", ns=mx, stdin=MIXED_NATIVE)
    sh("iptables-legacy", "-A", "INPUT", "-p", "udp", "--dport", "9994", "-j", "DROP", ns=mx)
    send(mc, "tcp", "10.78.1.1", 9999)
    send(mc, "udp", "10.78.1.1", 9998, 3)
    send(mc, "udp", "10.78.1.1", 9993, 2)
    send(mc, "udp", "10.78.9.5", 7000, 4)  # forwarded: the FORWARD policy drops them
    send(mc, "udp", "10.78.1.1", 9997, 6)
    send(mc, "udp", "fd78:1::1", 9996, 2)
    send(mc, "udp", "10.78.1.1", 9995, 3)
    send(mc, "udp", "10.78.1.1", 9994, 5)
    (HERE / "nft-mixed.json").write_text(sh("nft", "-j", "list", "ruleset", ns=mx).stdout)
    save = sh("iptables-save", "-c", ns=mx)
    (HERE / "nft-mixed.iptables-save").write_text(save.stdout)
    (HERE / "nft-mixed.iptables-save.stderr").write_text(save.stderr)
    (HERE / "nft-mixed.ip6tables-save").write_text(sh("ip6tables-save", "-c", ns=mx).stdout)
    (HERE / "nft-mixed.iptables-legacy-save").write_text(sh("iptables-legacy-save", "-c", ns=mx).stdout)
    (HERE / "nft-mixed.iptables-version").write_text(sh("iptables", "-V").stdout)


def record_loss() -> None:
    """Loss injected the nft way (numgen) and reverse-path filtering written as a fib rule."""
    lx, lc = netns("lx"), netns("lc")
    veth(lx, "to-lc", lc, "eth0")
    addr(lx, "to-lc", "10.80.1.1/24")
    addr(lc, "eth0", "10.80.1.2/24", "10.80.7.2/24")
    sh("nft", "-f", "-", ns=lx, stdin=LOSS_RULESET)  # lx has no route back to 10.80.7.2: fib drops it
    send(lc, "udp", "10.80.1.1", 9980, 40)
    send(lc, "udp", "10.80.1.1", 9981, 3, src="10.80.7.2")
    (HERE / "nft-loss.json").write_text(sh("nft", "-j", "list", "ruleset", ns=lx).stdout)
    (HERE / "nft-loss.nft").write_text(sh("nft", "list", "ruleset", ns=lx).stdout)


def record_shadow() -> None:
    sx, sc = netns("sx"), netns("sc")
    veth(sx, "to-sc", sc, "eth0")
    addr(sx, "to-sc", "10.79.1.1/24")
    addr(sc, "eth0", "10.79.1.2/24")
    sh("nft", "-f", "-", ns=sx, stdin=SHADOW_RULESET)
    send(sc, "udp", "10.79.1.1", 9990, 3)
    (HERE / "nft-shadow.json").write_text(sh("nft", "-j", "list", "ruleset", ns=sx).stdout)
    (HERE / "nft-shadow.iptables-save").write_text(sh("iptables-save", "-c", ns=sx).stdout)


RECORDINGS = {"router": lambda: record_router(), "mixed": lambda: record_mixed(), "shadow": lambda: record_shadow(),
              "loss": lambda: record_loss()}
try:
    for name in sys.argv[2:] or RECORDINGS:
        RECORDINGS[name]()
finally:
    failures = journal.undo()
    if failures:
        print("cleanup failed:", failures, file=sys.stderr)
print(f"recorded into {HERE}")
