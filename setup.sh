#!/usr/bin/env bash
# Install what vnetdiag needs on Debian 12, as root: the Debian packages it
# runs, a virtualenv in .venv with vnetdiag and its Python dependencies, and a
# mounted tracefs. With --test, also what the test suite and the benchmarks
# use (reference tools, a browser for page checks, Prometheus, QEMU guests).
# Safe to run again. It never stops, disables or kills anything already
# running: package services are kept from starting while apt installs them.
set -euo pipefail
cd "$(dirname "$0")"

RUNTIME_DEBS=(
  python3-venv iproute2 iputils-ping iptables nftables conntrack ethtool kmod procps psmisc
  tcpdump bpftrace graphviz
)
TEST_DEBS=(
  tshark sockperf iperf3 chromium prometheus openssh-server openssh-client
  babeltrace2 python3-bt2 qemu-system-x86 busybox-static
)
want_test=0
for a in "$@"; do
  case "$a" in
    --test) want_test=1 ;;
    -h|--help) echo "usage: ./setup.sh [--test]  (--test: also what the tests and benchmarks need)"; exit 0 ;;
    *) echo "setup.sh: unknown option $a (hint: ./setup.sh or ./setup.sh --test)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (sudo ./setup.sh): it installs Debian packages" >&2
  exit 3
fi
debs=("${RUNTIME_DEBS[@]}")
[ "$want_test" -eq 1 ] && debs+=("${TEST_DEBS[@]}")
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # Packages such as prometheus and openssh-server start a service when
  # installed; a policy-rc.d that says "no" keeps invoke-rc.d from starting
  # it, so nothing has to be stopped afterwards. An existing policy is kept.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# vnetdiag setup.sh: no service starts during installation\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  # tshark asks whether non-root users may capture; answer for it.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  # Debian's Python with its site packages: babeltrace2's bindings (python3-bt2) live there.
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
if [ "$want_test" -eq 1 ]; then
  .venv/bin/pip install -q -e '.[test]'
else
  .venv/bin/pip install -q -e .
fi

if ! mountpoint -q /sys/kernel/tracing; then
  mount -t tracefs nodev /sys/kernel/tracing || echo "setup.sh: could not mount tracefs; tracing features will say so" >&2
fi
echo "setup.sh: ready: .venv/bin/vnetdiag"
