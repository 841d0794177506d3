#!/usr/bin/env bash
# Hostile-network benchmark on loopback (issue 8: floods cost nothing).
#
# For each attack a fresh switchboard (built from this repository) runs on
# the shipped configuration with only addresses and ports changed (SIP, HTTP,
# media and TURN on 127.0.0.1, ephemeral or high ports, a temporary
# database), pinned to core 0 with taskset; the load generator (main.go in
# this directory) runs on core 1. The attacks:
#   (a) GARBAGE_N (100,000) mutated and junk datagrams at GARBAGE_RATE
#       (3,000/s) from one source address (127.0.0.2);
#   (b) the same from 254 rotating sources (127.0.0.2-127.0.0.255);
#   (c) an INVITE flood from a stranger (sip:x@198.51.100.9) to a registered
#       local user: FLOOD_N (40,000) at FLOOD_RATE (2,000/s, 20 s) from
#       FLOOD_SOURCES (50) rotating sources, under the per-source limit;
#   (d) the same flood from one source.
# Meanwhile a legitimate client on 127.0.0.1 registers with digest
# authentication every 100 ms, during the attack and for SETTLE (60 s) after.
# Printed per attack: peak RSS (VmHWM), RSS SETTLE after, goroutines before
# and after (/metrics), call records written for the attackers (`switchboard
# cdr list`), the legitimate success rate, and the server's log lines.
# Targets beside them: peak RSS < 100 MB, < 50 MB within 60 s, 0 records,
# >= 99.9 % legitimate success.
#
# Usage: bench/hostile/run.sh [a b c d]   (default: all)
# KEEP=1 keeps the work dir (server logs). Every loop is bounded in count and
# time: the generator stops after its count or its deadline, the server is
# killed if it does not stop within 60 s of SIGTERM.
# Needs: go, util-linux (taskset).
set -euo pipefail

cd "$(dirname "$0")/../.."

GARBAGE_N=${GARBAGE_N:-100000}
GARBAGE_RATE=${GARBAGE_RATE:-3000}
FLOOD_N=${FLOOD_N:-40000}
FLOOD_RATE=${FLOOD_RATE:-2000}
FLOOD_SOURCES=${FLOOD_SOURCES:-50}
SETTLE=${SETTLE:-60s}
SERVER_CPU=0
GEN_CPU=1
DOMAIN=switchboard.local
ATTACKS=("$@")
((${#ATTACKS[@]})) || ATTACKS=(a b c d)

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

command -v taskset >/dev/null || die "taskset not found: apt-get install util-linux"
if (($(nproc) < 2)); then
	GEN_CPU=0
	log "only one CPU: server and generator share it"
fi

WORK=$(mktemp -d /tmp/switchboard-hostile.XXXXXX)
SERVER_PID=
cleanup() {
	if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill -9 "$SERVER_PID" 2>/dev/null || true
	fi
	if [[ ${KEEP:-} ]]; then
		log "kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r load1 _ </proc/loadavg
log "load average $load1 before starting"

log "building switchboard and the generator"
go build -o "$WORK/switchboard" ./cmd/switchboard
go build -o "$WORK/hostile" ./bench/hostile

# start_server NAME: a fresh database and config, users alice and bob, the
# server pinned to SERVER_CPU. Sets SERVER_PID, SIP_UDP, HTTP_ADDR, CFG, SLOG.
start_server() {
	local name=$1 i
	CFG=$WORK/$name.yaml
	SLOG=$WORK/$name.log
	cat >"$CFG" <<EOF
database: $WORK/$name.db
sip:
  listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0]
http:
  listen: 127.0.0.1:0
media: {public_ip: 127.0.0.1, bind_ip: 127.0.0.1, rtp_ports: 30000-39999}
turn: {listen: [udp://127.0.0.1:0, tcp://127.0.0.1:0], public_ip: 127.0.0.1, relay_ports: 40000-44999}
EOF
	"$WORK/switchboard" user add alice --password alice-secret --config "$CFG" >/dev/null
	"$WORK/switchboard" user add bob --password bob-secret --config "$CFG" >/dev/null
	taskset -c $SERVER_CPU "$WORK/switchboard" serve --config "$CFG" 2>"$SLOG" &
	SERVER_PID=$!
	SIP_UDP= HTTP_ADDR=
	for i in $(seq 300); do
		SIP_UDP=$(awk '/msg=listening/ && /component=sip/ && /transport=udp/ {for (i=1;i<=NF;i++) if ($i ~ /^addr=/) {sub(/^addr=/, "", $i); print $i; exit}}' "$SLOG")
		HTTP_ADDR=$(awk '/msg=listening/ && /component=http/ {for (i=1;i<=NF;i++) if ($i ~ /^addr=/) {sub(/^addr=/, "", $i); print $i; exit}}' "$SLOG")
		[[ -n $SIP_UDP && -n $HTTP_ADDR ]] && break
		kill -0 "$SERVER_PID" 2>/dev/null || die "switchboard exited: $(tail -5 "$SLOG")"
		sleep 0.1
	done
	[[ -n $SIP_UDP && -n $HTTP_ADDR ]] || die "switchboard did not log its listeners: $(tail -5 "$SLOG")"
}

stop_server() {
	kill -TERM "$SERVER_PID" 2>/dev/null || true
	for _ in $(seq 600); do
		kill -0 "$SERVER_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$SERVER_PID" 2>/dev/null; then
		log "switchboard did not stop within 60 s of SIGTERM; killing it"
		kill -9 "$SERVER_PID" 2>/dev/null || true
	fi
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=
}

ROWS=()
LOGROWS=()
first=1
# attack NAME LABEL ARGS...: one row of the table.
attack() {
	local name=$1 label=$2 t0 t1 lines errs
	shift 2
	log "$label: starting"
	start_server "$name"
	local hdr=()
	((first)) && hdr=(-header)
	first=0
	t0=$(date +%s)
	local out
	out=$(taskset -c $GEN_CPU "$WORK/hostile" "${hdr[@]}" -label "$label" -server "$SIP_UDP" -pid "$SERVER_PID" \
		-http "$HTTP_ADDR" -bin "$WORK/switchboard" -config "$CFG" -domain "$DOMAIN" -settle "$SETTLE" "$@") ||
		die "$label: generator failed: $out"
	t1=$(date +%s)
	ROWS+=("$out")
	lines=$(wc -l <"$SLOG")
	errs=$(grep -c -E 'level=(WARN|ERROR)' "$SLOG" || true)
	LOGROWS+=("| $label | $lines | $errs | $(awk -v l="$lines" -v s="$((t1 - t0))" 'BEGIN {printf "%.1f", l / (s > 0 ? s : 1)}') |")
	stop_server
	log "$label: done"
	echo "$out" | tail -1 >&2
}

for a in "${ATTACKS[@]}"; do
	case $a in
	a) attack garbage1 "(a) garbage, 1 source" -scenario garbage -n "$GARBAGE_N" -rate "$GARBAGE_RATE" -sources 1 ;;
	b) attack garbage254 "(b) garbage, 254 sources" -scenario garbage -n "$GARBAGE_N" -rate "$GARBAGE_RATE" -sources 254 ;;
	c) attack flood "(c) INVITE flood, $FLOOD_SOURCES sources" -scenario flood -n "$FLOOD_N" -rate "$FLOOD_RATE" -sources "$FLOOD_SOURCES" ;;
	d) attack flood1 "(d) INVITE flood, 1 source" -scenario flood -n "$FLOOD_N" -rate "$FLOOD_RATE" -sources 1 ;;
	*) die "unknown attack $a (a b c d)" ;;
	esac
done

echo
echo "Hostile-network benchmark, $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), server on core $SERVER_CPU, generator on core $GEN_CPU"
echo "shipped configuration (addresses and ports changed); legitimate client: REGISTER with digest every 100 ms from 127.0.0.1, during the attack and $SETTLE after"
echo
printf '%s\n' "${ROWS[@]}"
echo
echo "| attack | server log lines | of them WARN/ERROR | lines/s over the run |"
echo "| --- | ---: | ---: | ---: |"
printf '%s\n' "${LOGROWS[@]}"
