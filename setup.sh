#!/usr/bin/env bash
# Install everything vnetdiag and its tests need on Debian 12, as root:
# the Debian packages, a virtualenv in .venv with vnetdiag and its Python
# dependencies, and a mounted tracefs. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

DEBS=(
  python3-venv iproute2 iputils-ping iptables nftables conntrack ethtool kmod procps psmisc
  tcpdump tshark sockperf iperf3 bpftrace graphviz prometheus chromium
)
if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (sudo ./setup.sh): it installs Debian packages" >&2
  exit 3
fi
missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer for it.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
# The prometheus package starts a server on :9090 we do not want running.
systemctl disable --now prometheus >/dev/null 2>&1 || true
pkill -x prometheus 2>/dev/null || true

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e '.[test]'

if ! mountpoint -q /sys/kernel/tracing; then
  mount -t tracefs nodev /sys/kernel/tracing || echo "setup.sh: could not mount tracefs; tracing features will say so" >&2
fi
echo "setup.sh: ready: .venv/bin/vnetdiag"
