#!/usr/bin/env bash
# Media relay benchmark on loopback: switchboard's media.Relay next to
# rtpengine (userspace, --table=-1) when it is installed (Debian package
# rtpengine-daemon), with the same load generator and the same pinning.
#
#   bench/relay/run.sh                     # N = 100,300,600 calls, 20 s each
#   NS=600 DUR=10s REPEAT=3 bench/relay/run.sh
#   TAGS=media_netpoll RTPENGINE=no bench/relay/run.sh   # goroutine-per-socket engine
#   MODE=webrtc bench/relay/run.sh         # WebRTC⇄plain: N = 100,200,400 calls
#
# MODE=webrtc makes the caller of every call a browser (pion ICE agent,
# DTLS client and SRTP, relay.go's -webrtc) and its callee a plain RTP
# phone: switchboard's relay and rtpengine (ICE=force DTLS=passive towards
# the browser, ICE=remove RTP/AVP towards the phone) convert, in the same
# run, after a plain direct run at the same load as the latency baseline.
# When rtpengine is missing and this runs as root with apt-get, it installs
# the Debian package rtpengine-daemon (RTPENGINE=no: skip rtpengine).
#
# Each call sends one 172-byte RTP packet every 20 ms each way (100 pps per
# call). The relay runs pinned to CPU $SERVER_CPU, the generator to
# $GEN_CPU. As root the run gets a session (scheduler autogroup) of its own
# with nice -15, so that other sessions' compilers and tests on a shared
# machine do not preempt it (with autogroup scheduling a process's nice value
# counts only inside its session), and the socket buffer limits are raised
# for the run and put back afterwards. Prints a Markdown table.
set -euo pipefail

if [ "$(id -u)" = 0 ] && [ -w /proc/self/autogroup ]; then
	if [ -z "${RELAYBENCH_SESSION:-}" ] && command -v setsid >/dev/null; then
		RELAYBENCH_SESSION=1 exec setsid -w "$0" "$@"
	fi
	echo -15 >/proc/self/autogroup || true
fi

MODE=${MODE:-plain} # plain | webrtc
if [ "$MODE" = webrtc ]; then NS=${NS:-100,200,400}; else NS=${NS:-100,300,600}; fi
DUR=${DUR:-20s}
WARM=${WARM:-3s}
REPEAT=${REPEAT:-1}
SERVER_CPU=${SERVER_CPU:-0}
GEN_CPU=${GEN_CPU:-1}
RTPENGINE=${RTPENGINE:-auto} # auto (install if missing) | no
NG=127.0.0.1:22223           # not the packaged service's 2223, should it run
TAGS=${TAGS:-}               # go build -tags for the relay (media_netpoll: portable engine)

cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
rtpe_pid=""
old_rmem="" old_wmem=""
cleanup() {
	if [ -n "$rtpe_pid" ]; then kill "$rtpe_pid" 2>/dev/null || true; fi
	if [ -n "$old_rmem" ]; then sysctl -q -w net.core.rmem_max="$old_rmem" net.core.wmem_max="$old_wmem" || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT

go build -tags "$TAGS" -o "$tmp/relay" ./bench/relay

if [ "$RTPENGINE" != no ] && ! command -v rtpengine >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "run.sh: installing rtpengine-daemon (RTPENGINE=no to skip rtpengine)" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q rtpengine-daemon >&2
	else
		echo "run.sh: rtpengine not installed (Debian: apt-get install rtpengine-daemon); its rows are skipped" >&2
	fi
fi
have_rtpe=false
if [ "$RTPENGINE" != no ] && command -v rtpengine >/dev/null; then have_rtpe=true; fi

gen=("$tmp/relay")
if command -v taskset >/dev/null; then gen=(taskset -c "$GEN_CPU" "${gen[@]}"); else SERVER_CPU=""; fi
if [ "$(id -u)" = 0 ]; then
	gen=(nice -n -15 "${gen[@]}")
	old_rmem=$(sysctl -n net.core.rmem_max) old_wmem=$(sysctl -n net.core.wmem_max)
	sysctl -q -w net.core.rmem_max=16777216 net.core.wmem_max=16777216
fi

echo "<!-- $(date -u +%FT%TZ) $(uname -r), $(nproc) CPUs; load average: $(cut -d' ' -f1-3 /proc/loadavg); cpu pressure: $(head -1 /proc/pressure/cpu 2>/dev/null || echo n/a) -->"
first=true
row() { # backend args...
	local h=false
	if $first; then h=true; first=false; fi
	"${gen[@]}" load -header=$h -n "$NS" -duration "$DUR" -warmup "$WARM" "$@"
}

start_rtpengine() {
	local rtpe=(rtpengine --config-file=none --table=-1 --interface=127.0.0.1 --listen-ng="$NG"
		--port-min=20002 --port-max=29999 --foreground --log-stderr --log-level=3
		--num-threads=1 --pidfile="$tmp/rtpengine.pid")
	if [ -n "$SERVER_CPU" ]; then rtpe=(taskset -c "$SERVER_CPU" "${rtpe[@]}"); fi
	if [ "$(id -u)" = 0 ]; then rtpe=(nice -n -15 "${rtpe[@]}"); fi
	"${rtpe[@]}" 2>"$tmp/rtpengine.log" &
	rtpe_pid=$!
	for _ in $(seq 50); do [ -s "$tmp/rtpengine.pid" ] && break; sleep 0.1; done
	if [ ! -s "$tmp/rtpengine.pid" ]; then
		cat "$tmp/rtpengine.log" >&2
		echo "run.sh: rtpengine did not start" >&2
		exit 1
	fi
}
stop_rtpengine() {
	kill "$rtpe_pid"
	wait "$rtpe_pid" 2>/dev/null || true
	rtpe_pid=""
	rm -f "$tmp/rtpengine.pid"
}

for rep in $(seq "$REPEAT"); do
	if [ "$MODE" = webrtc ]; then
		# One process runs, at each N: direct (plain, the baseline), switchboard, rtpengine.
		backends=direct,switchboard
		extra=()
		if $have_rtpe; then
			start_rtpengine
			backends=$backends,rtpengine
			extra=(-ng "$NG" -rtpengine-pid "$(cat "$tmp/rtpengine.pid")")
		fi
		row -webrtc -backend "$backends" -server-cpu "$SERVER_CPU" -relay-bin "$tmp/relay" "${extra[@]}"
		if $have_rtpe; then stop_rtpengine; fi
		continue
	fi
	row -backend direct
	row -backend switchboard -server-cpu "$SERVER_CPU" -relay-bin "$tmp/relay"

	if $have_rtpe; then
		start_rtpengine
		row -backend rtpengine -ng "$NG" -rtpengine-pid "$(cat "$tmp/rtpengine.pid")"
		stop_rtpengine
	fi
done
