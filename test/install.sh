#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian 12, as root.
# Sources: Debian's apt repositories, the npm registry and the Go module proxy
# only. Idempotent: apt is skipped when every tool is already present.
set -euo pipefail

cd "$(dirname "$0")/.."

# Debian packages and a file each one is known to provide.
# sip-tester: SIPp. baresip-core: baresip with the ctrl_tcp, aufile, sndfile,
# aubridge and g711 modules. coturn: turnutils_* client tools. sox: tones and
# audio checks. chromium + chromium-driver: browser tests. iproute2, iptables:
# network namespaces and NAT for the NAT tests. sipvicious: svwar and svcrack
# for the hostile-network tests (test/hostile). pebble: the ACME test server
# the certificate tests (certs/) obtain and renew certificates from.
# twinkle-console, linphone-cli: two more phone stacks the interop tests
# register and call with (test/interop/phones_test.go); pulseaudio,
# pulseaudio-utils (pacat) and libasound2-plugins (ALSA's pulse plugin) are
# Twinkle's sound card there. tcpdump: what the
# relay sends a phone after a re-INVITE (test/browser), and NAT evidence.
declare -A needs=(
	[sip-tester]=/usr/bin/sipp
	[baresip-core]=/usr/lib/baresip/modules/ctrl_tcp.so
	[coturn]=/usr/bin/turnutils_uclient
	[sox]=/usr/bin/sox
	[chromium]=/usr/bin/chromium
	[chromium-driver]=/usr/bin/chromedriver
	[iproute2]=/usr/bin/ip
	[iptables]=/usr/sbin/iptables
	[ca-certificates]=/etc/ssl/certs/ca-certificates.crt
	[sipvicious]=/usr/bin/svcrack
	[pebble]=/usr/bin/pebble
	[sngrep]=/usr/bin/sngrep
	[twinkle-console]=/usr/bin/twinkle-console
	[linphone-cli]=/usr/bin/linphonec
	[pulseaudio]=/usr/bin/pulseaudio
	[pulseaudio-utils]=/usr/bin/pacat
	[libasound2-plugins]=/usr/lib/x86_64-linux-gnu/alsa-lib/libasound_module_pcm_pulse.so
	[tcpdump]=/usr/bin/tcpdump
)
# baresip modules the interop tests load.
baresip_modules=(ctrl_tcp aufile sndfile aubridge g711 account uuid)

missing=()
for pkg in "${!needs[@]}"; do
	[[ -e ${needs[$pkg]} ]] || missing+=("$pkg")
done
for m in "${baresip_modules[@]}"; do
	if [[ ! -e /usr/lib/baresip/modules/$m.so ]]; then
		missing+=(baresip-core)
		break
	fi
done

if ((${#missing[@]} > 0)); then
	if [[ $(id -u) -ne 0 ]]; then
		echo "install.sh: missing packages (${missing[*]}) and not root; install them with apt-get" >&2
		exit 1
	fi
	echo "install.sh: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update
	apt-get install -y --no-install-recommends \
		sip-tester baresip-core coturn sox chromium chromium-driver \
		iproute2 iptables ca-certificates sipvicious pebble sngrep twinkle-console linphone-cli tcpdump \
		pulseaudio pulseaudio-utils libasound2-plugins
	# coturn's package enables a server on install in some setups; the tests
	# start their own servers, so make sure no system turnserver holds ports.
	if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet coturn 2>/dev/null; then
		systemctl stop coturn || true
	fi
else
	echo "install.sh: system packages already present" >&2
fi

echo "install.sh: go mod download" >&2
go mod download

# The linter, from the Go module proxy (built once; later runs find it).
GOLANGCI_VERSION=v2.15.0
gobin=$(go env GOPATH)/bin
if ! "$gobin/golangci-lint" version 2>/dev/null | grep -q "version ${GOLANGCI_VERSION#v} "; then
	echo "install.sh: go install golangci-lint $GOLANGCI_VERSION" >&2
	GOFLAGS=-mod=mod go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$GOLANGCI_VERSION"
fi

if [[ -f test/interop/wsclients/package.json ]]; then
	echo "install.sh: npm ci in test/interop/wsclients (JsSIP, SIP.js)" >&2
	(cd test/interop/wsclients && npm ci --no-audit --no-fund)
fi
if [[ -f test/browser/package.json ]]; then
	echo "install.sh: npm ci in test/browser" >&2
	(cd test/browser && npm ci --no-audit --no-fund)
fi
echo "install.sh: done" >&2
