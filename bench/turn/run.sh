#!/usr/bin/env bash
# TURN server comparison on loopback: switchboard's media/turn vs coturn.
#
# For each server, in ROUNDS interleaved rounds (the medians are reported):
#   1. allocations/s: bench/turn/allocload, WORKERS clients × PER allocations
#      each over UDP (Allocate → 401 → authenticated Allocate), held; once
#      with the clients spread over SOURCES loopback addresses (many clients)
#      and once all from 127.0.0.1 (clients behind one NAT address);
#   2. relay flood: turnutils_uclient -m M -n N -l L -z Z -c through the
#      server to turnutils_peer (client → relay → peer → relay → client),
#      reporting loss and the server's CPU seconds.
# Servers (KINDS): coturn (turnserver, lt-cred-mech, one static user, no TLS);
# binary: the switchboard binary itself (`switchboard serve`) with the shipped
# configuration, changing only addresses, turn.allow_peers (loopback peers)
# and turn.max_allocations_per_user (-1: the benchmark holds 4,000
# allocations of one user, and coturn has no user quota either) — so its
# per-source Allocate limit (turn.allocate_rate, 1000/s) is the shipped one;
# switchboard media/turn standalone (bench/turn/server, no per-source limit)
# with its defaults (SO_REUSEPORT read loops, 4 MiB socket buffers); and the
# same with pion/turn's defaults (one read loop, kernel socket buffer).
# The server runs on core 0 (taskset), load generators on core 1. Everything
# listens on 127.0.0.1, every step is bounded by `timeout`, and every process
# started here is killed by PID on exit.
#
# The machine may be shared: rounds are interleaved and medians reported,
# and kernel drops are counted per socket so that loss can be placed (server
# or turnutils_peer; the rest is at the clients or in flight).
#
# Usage: bench/turn/run.sh  (ROUNDS=3 Z=1 M=50 N=4000 L=172 WORKERS=16 PER=250 SOURCES=16
#                            KINDS="coturn binary switchboard pion-defaults")
set -euo pipefail

ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-16}
PER=${PER:-250}
SOURCES=${SOURCES:-16}
M=${M:-50}
N=${N:-4000}
L=${L:-172}
Z=${Z:-1}
USER_NAME=alice
USER_PASS=alicepw
REALM=switchboard.test

cd "$(dirname "$0")/../.."

for tool in go turnserver turnutils_uclient turnutils_peer turnutils_stunclient taskset timeout ss awk; do
	command -v "$tool" >/dev/null || { echo "missing $tool (coturn tools: apt-get install coturn)" >&2; exit 1; }
done

TMP=$(mktemp -d /tmp/turnbench.XXXXXX)
PEER_PID=
SERVER_PID=
RMEM_ORIG=$(sysctl -n net.core.rmem_max)
WMEM_ORIG=$(sysctl -n net.core.wmem_max)
# Only processes started here and still running are killed, by PID.
cleanup() {
	for p in $SERVER_PID $PEER_PID; do
		kill "$p" 2>/dev/null || true
		timeout 5 tail --pid="$p" -f /dev/null 2>/dev/null || kill -9 "$p" 2>/dev/null || true
	done
	sysctl -qw net.core.rmem_max="$RMEM_ORIG" net.core.wmem_max="$WMEM_ORIG" 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

# Room for WORKERS×PER held allocations (one socket each, on both sides).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# Let SO_RCVBUF reach 4 MiB for both servers (restored on exit).
if [ "$RMEM_ORIG" -lt 4194304 ] || [ "$WMEM_ORIG" -lt 4194304 ]; then
	sysctl -qw net.core.rmem_max=4194304 net.core.wmem_max=4194304 || true
fi

echo "== building" >&2
go build -o "$TMP/sbturn" ./bench/turn/server
go build -o "$TMP/allocload" ./bench/turn/allocload
go build -o "$TMP/switchboard" ./cmd/switchboard

free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % 20000))
		if [ -z "$(ss -Hlun "( sport = :$p )")" ] && [ -z "$(ss -Hltn "( sport = :$p )")" ]; then
			echo "$p"
			return
		fi
	done
	echo "no free port" >&2
	exit 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)
# sock_drops PID: datagrams the kernel dropped on PID's UDP sockets because
# their receive buffer was full (ss skmem d<N>), summed.
sock_drops() {
	ss -uanmp | awk -v pid="$1" '
		/users:/ { own = index($0, "pid=" pid ",") > 0 }
		/skmem:/ && own { if (match($0, /,d[0-9]+\)/)) s += substr($0, RSTART + 2, RLENGTH - 3) }
		END { print s + 0 }'
}

# wait_stun PORT: until the server answers a STUN Binding (bounded).
wait_stun() {
	for _ in $(seq 1 50); do
		if timeout 2 turnutils_stunclient -p "$1" 127.0.0.1 >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.2
	done
	echo "server on port $1 did not come up" >&2
	return 1
}

# start_server KIND PORT → prints PID
start_server() {
	local kind=$1 port=$2
	case $kind in
	coturn)
		cat >"$TMP/coturn-$port.conf" <<-EOF
			listening-ip=127.0.0.1
			relay-ip=127.0.0.1
			listening-port=$port
			min-port=49152
			max-port=65535
			lt-cred-mech
			user=$USER_NAME:$USER_PASS
			realm=$REALM
			no-tls
			no-dtls
			no-cli
			no-stdout-log
			log-file=$TMP/coturn-$port.log
			simple-log
			allow-loopback-peers
			pidfile=$TMP/coturn-$port.pid
			userdb=$TMP/coturn-$port.db
		EOF
		taskset -c 0 turnserver -c "$TMP/coturn-$port.conf" >/dev/null 2>&1 &
		;;
	switchboard)
		taskset -c 0 "$TMP/sbturn" -listen "udp://127.0.0.1:$port" -user "$USER_NAME=$USER_PASS" \
			-realm "$REALM" -allow-peers 127.0.0.0/8 >"$TMP/sb-$port.out" 2>"$TMP/sb-$port.err" &
		;;
	pion-defaults)
		taskset -c 0 "$TMP/sbturn" -listen "udp://127.0.0.1:$port" -user "$USER_NAME=$USER_PASS" \
			-realm "$REALM" -allow-peers 127.0.0.0/8 -read-loops 1 -socket-buffer -1 \
			>"$TMP/sb-$port.out" 2>"$TMP/sb-$port.err" &
		;;
	binary)
		# The shipped configuration (embedded defaults) with these changes.
		cat >"$TMP/bin-$port.yaml" <<-EOF
			domain: $REALM
			database: $TMP/bin-$port.db
			log: {level: warn}
			sip: {listen: [udp://127.0.0.1:$(free_port)]}
			http: {listen: 127.0.0.1:$(free_port), https: {listen: ""}}
			media: {relay: never, public_ip: 127.0.0.1, bind_ip: 127.0.0.1}
			webrtc: {enabled: false}
			turn:
			  listen: [udp://127.0.0.1:$port]
			  public_ip: 127.0.0.1
			  allow_peers: [127.0.0.0/8]
			  max_allocations_per_user: -1
		EOF
		"$TMP/switchboard" user add "$USER_NAME" --password "$USER_PASS" --config "$TMP/bin-$port.yaml" >/dev/null
		taskset -c 0 "$TMP/switchboard" serve --config "$TMP/bin-$port.yaml" >"$TMP/bin-$port.out" 2>"$TMP/bin-$port.err" &
		;;
	esac
	echo $!
}

stop_server() {
	kill "$1" 2>/dev/null || true
	timeout 10 tail --pid="$1" -f /dev/null 2>/dev/null || kill -9 "$1" 2>/dev/null || true
}

PEER_PORT=$(free_port)
taskset -c 1 turnutils_peer -L 127.0.0.1 -p "$PEER_PORT" >/dev/null 2>&1 &
PEER_PID=$!

read -r -a KINDS <<<"${KINDS:-coturn binary switchboard pion-defaults}"
declare -A RES
echo "== load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for round in $(seq 1 "$ROUNDS"); do
	for kind in "${KINDS[@]}"; do
		port=$(free_port)
		pid=$(start_server "$kind" "$port")
		SERVER_PID=$pid
		wait_stun "$port"

		c0=$(cpu_ticks "$pid")
		alloc_out=$(timeout 180 taskset -c 1 "$TMP/allocload" -server "127.0.0.1:$port" -sources "$SOURCES" \
			-user "$USER_NAME" -pass "$USER_PASS" -workers "$WORKERS" -per "$PER" -timeout 120s -release=true)
		c1=$(cpu_ticks "$pid")
		rate=$(sed -n 's/.*rate=\([0-9.]*\).*/\1/p' <<<"$alloc_out")
		allocs=$(sed -n 's/^allocs=\([0-9]*\).*/\1/p' <<<"$alloc_out")
		us_per_alloc=$(awk -v t=$((c1 - c0)) -v hz="$TICK" -v n="$allocs" 'BEGIN { printf "%.0f", n ? t / hz * 1e6 / n : 0 }')
		# The same from one address (clients behind one NAT), after the
		# released allocations are gone.
		sleep 1
		nat_out=$(timeout 180 taskset -c 1 "$TMP/allocload" -server "127.0.0.1:$port" -sources 1 \
			-user "$USER_NAME" -pass "$USER_PASS" -workers "$WORKERS" -per "$PER" -timeout 120s -release=false)
		nat_rate=$(sed -n 's/.*rate=\([0-9.]*\).*/\1/p' <<<"$nat_out")

		p0=$(sock_drops "$PEER_PID")
		s0=$(sock_drops "$pid")
		c0=$(cpu_ticks "$pid")
		flood_out=$(timeout 300 taskset -c 1 turnutils_uclient -u "$USER_NAME" -w "$USER_PASS" -p "$port" \
			-e 127.0.0.1 -r "$PEER_PORT" -m "$M" -n "$N" -l "$L" -c -z "$Z" 127.0.0.1 2>&1 || true)
		c1=$(cpu_ticks "$pid")
		# Relay sockets stay open after the run (uclient does not deallocate).
		sdrops=$(($(sock_drops "$pid") - s0))
		pdrops=$(($(sock_drops "$PEER_PID") - p0))
		loss=$(sed -n 's/.*Total lost packets [0-9]* (\([0-9.]*\)%).*/\1/p' <<<"$flood_out" | tail -1)
		[ -n "$loss" ] && loss=$(awk -v l="$loss" 'BEGIN { printf "%.2f", l }')
		totals=$(grep -o 'tot_send_msgs=[0-9]*, tot_recv_msgs=[0-9]*' <<<"$flood_out" | tail -1 || true)
		cpu_s=$(awk -v t=$((c1 - c0)) -v hz="$TICK" 'BEGIN { printf "%.2f", t / hz }')

		stop_server "$pid"
		SERVER_PID=
		echo "round $round $kind: $alloc_out cpu/alloc=${us_per_alloc}us | one address: $nat_out | flood loss=${loss:-?}% $totals cpu=${cpu_s}s server_drops=$sdrops peer_drops=$pdrops load=$(cut -d' ' -f1 /proc/loadavg)" >&2
		RES[$kind,$round]="$rate ${us_per_alloc} ${loss:-100} $cpu_s $sdrops $pdrops ${nat_rate:-0}"
	done
done
echo "== load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

median() { sort -g | awk '{a[NR] = $1} END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3g\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { # col KIND FIELD → median over rounds
	for r in $(seq 1 "$ROUNDS"); do awk -v f="$2" '{print $f}' <<<"${RES[$1,$r]}"; done | median
}
all() {
	for r in $(seq 1 "$ROUNDS"); do awk -v f="$2" '{print $f}' <<<"${RES[$1,$r]}"; done | paste -sd/ -
}

echo
echo "TURN on loopback, $(nproc) cores, server on core 0, load on core 1; medians of $ROUNDS rounds (all rounds in brackets)"
echo "allocations: $WORKERS clients × $PER held, from $SOURCES addresses / from one address; flood: turnutils_uclient -m $M -n $N -l $L -z $Z -c via turnutils_peer"
echo
echo "loss % = lost/sent as counted by uclient; drops = datagrams the kernel dropped on the server's / turnutils_peer's full sockets"
echo
echo "| server | allocations/s, $SOURCES addresses | server CPU µs/alloc | allocations/s, one address | flood loss % | drops at server | drops at peer | flood server CPU s |"
echo "|---|---|---|---|---|---|---|---|"
for kind in "${KINDS[@]}"; do
	case $kind in
	coturn) name="coturn $(turnserver --version 2>/dev/null | head -1)" ;;
	binary) name="switchboard binary (shipped config)" ;;
	switchboard) name="switchboard media/turn (defaults)" ;;
	pion-defaults) name="switchboard, pion defaults (1 read loop, kernel socket buffers)" ;;
	esac
	echo "| $name | $(col "$kind" 1) [$(all "$kind" 1)] | $(col "$kind" 2) | $(col "$kind" 7) [$(all "$kind" 7)] | $(col "$kind" 3) [$(all "$kind" 3)] | $(col "$kind" 5) [$(all "$kind" 5)] | $(col "$kind" 6) [$(all "$kind" 6)] | $(col "$kind" 4) [$(all "$kind" 4)] |"
done
