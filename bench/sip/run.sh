#!/usr/bin/env bash
# SIP benchmark on loopback: switchboard (built from this repository) and,
# side by side on the same harness, Kamailio 5.6 from Debian.
#
# Measures, with SIPp (Debian's sip-tester):
#   1. authenticated registrations per second (REGISTER -> 401 -> REGISTER ->
#      200, users from an -inf file), stepping the rate up; the highest rate
#      with < 0.1% failed or unfinished registrations, all started on time
#      (SIPp holds the rate only while the server keeps up), is reported;
#   2. calls per second through the proxy (INVITE -> 407 -> ACK, INVITE with
#      credentials -> 180 -> 200 -> ACK, hold, BYE -> 200; SIPp UAC and UAS),
#      the same way;
#   3. memory per registration: server memory before and after MEM_USERS
#      users registered once each (switchboard: VmRSS from /proc/PID/status,
#      and the live Go heap after a collection from /metrics; Kamailio: shared memory in use
#      from `kamcmd core.shmmem`), SETTLE_SECONDS (40) after the last one so
#      that transaction state is gone.
#
# The server runs on core 0, SIPp on core 1 (taskset). As root, the socket
# buffer limits are raised for the run (and restored after). Every SIPp run is
# bounded in count (-m) and time (-timeout, then timeout(1)).
#
# Usage: bench/sip/run.sh [switchboard] [kamailio]   (default: both)
# KEEP=1 keeps the work dir (logs, SIPp statistics and errors).
# Knobs (environment): STEP_SECONDS (10), REG_RATES, CALL_RATES, HOLD_MS
# (1000), MEM_USERS (20000), USERS (20000), SIPP_PROCS (2), STAGES ("reg call
# mem"), RETRIES (1: a failed rate is tried once more), SB_RELAY
# (switchboard's media.relay, default never), SB_CONFIG (YAML appended to
# switchboard's config, e.g. "console: {enabled: false}"), SB_CONSOLE_PAGE=1
# (an operations console page open through the run: its live stream).
# Needs: go, sip-tester, util-linux (taskset); for Kamailio: kamailio,
# kamailio-sqlite-modules and sqlite3 (installed with apt-get when missing and
# root).
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
SCEN=$ROOT/test/interop/testdata # the SIPp scenarios of the interop tests
KAMCFG=$ROOT/bench/sip/kamailio/kamailio.cfg

STEP_SECONDS=${STEP_SECONDS:-10}
REG_RATES=${REG_RATES:-"1000 2000 4000 6000 7000 8000 9000 10000 11000 12000 14000 16000 18000 20000 24000"}
CALL_RATES=${CALL_RATES:-"200 400 600 800 1000 1200 1400 1600 1800 2000 2200 2400 2800 3200"}
HOLD_MS=${HOLD_MS:-1000}
USERS=${USERS:-20000}
MEM_USERS=${MEM_USERS:-20000}
SIPP_PROCS=${SIPP_PROCS:-2}
STAGES=${STAGES:-"reg call mem"}
RETRIES=${RETRIES:-1} # a failed step is run again this many times before giving up
DOMAIN=switchboard.local
MAX_FAIL_PPM=1000 # 0.1%
SERVER_CPU=0
SIPP_CPU=1
PEERS=("$@")
((${#PEERS[@]})) || PEERS=(switchboard kamailio)

. "$ROOT/bench/lib/harness.sh"

command -v sipp >/dev/null || die "sipp not found: apt-get install sip-tester"
command -v taskset >/dev/null || die "taskset not found: apt-get install util-linux"
NCPU=$(nproc)
if ((NCPU < 2)); then
	SIPP_CPU=0
	log "only one CPU: server and SIPp share it"
fi

harness_init switchboard-bench 0.7

# --- helpers ---------------------------------------------------------------

# child_cpu: sets CHILD_CPU to the CPU seconds used so far by this script's
# finished children (bash's `times`, which must run in this shell, not in a
# $(...) subshell): that covers the SIPp UAC runs.
child_cpu() {
	times >"$WORK/times"
	CHILD_CPU=$(awk 'NR == 2 {
		split($1, u, /[ms]/); split($2, s, /[ms]/)
		print u[1] * 60 + u[2] + s[1] * 60 + s[2]
	}' "$WORK/times")
}

# run_sipp NAME RATE COUNT LIMIT TIMEOUT ARGS...: runs SIPP_PROCS SIPp
# instances on the SIPp core, each with RATE/SIPP_PROCS calls per second and
# COUNT/SIPP_PROCS calls, and sets SUCC, FAIL, RETRANS, WALL (seconds).
run_sipp() {
	local name=$1 rate=$2 count=$3 limit=$4 tmo=$5
	shift 5
	local procs=$SIPP_PROCS
	((rate >= procs * 10)) || procs=1
	local r=$((rate / procs)) m=$((count / procs)) l=$(((limit + procs - 1) / procs))
	local i pids=() t0 t1
	t0=$(date +%s.%N)
	for ((i = 0; i < procs; i++)); do
		timeout -s KILL $((tmo + 20)) taskset -c $SIPP_CPU sipp -nostdin \
			-i 127.0.0.1 -p "$(free_port)" -r "$r" -rp 1000 -m "$m" -l "$l" \
			-buff_size 4194304 -max_recv_loops 10000 -max_sched_loops 10000 \
			-timeout "${tmo}s" -timeout_error \
			-trace_stat -stf "$WORK/$name.$i.csv" -fd 1 \
			-trace_err -error_file "$WORK/$name.$i.err" \
			"$@" >"$WORK/$name.$i.out" 2>&1 &
		pids+=($!)
		PIDS+=($!)
	done
	for i in "${pids[@]}"; do wait "$i" || true; done
	t1=$(date +%s.%N)
	SUCC=0 FAIL=0 RETRANS=0 CREATED=0
	for ((i = 0; i < procs; i++)); do
		local f=$WORK/$name.$i.csv c
		if [[ -s $f ]]; then
			SUCC=$((SUCC + $(stat_field "$f" 'SuccessfulCall(C)')))
			FAIL=$((FAIL + $(stat_field "$f" 'FailedCall(C)')))
			RETRANS=$((RETRANS + $(stat_field "$f" 'Retransmissions(C)')))
			c=$(created_after "$f" "$m")
			((c > CREATED)) && CREATED=$c
		else
			FAIL=$((FAIL + m))
			CREATED=999
			log "sipp $name.$i wrote no statistics: $(tail -3 "$WORK/$name.$i.out" | tr '\n' ' ')"
		fi
	done
	# Calls neither successful nor failed when SIPp stopped (still waiting
	# for an answer at -timeout) count as failed.
	LOST=$((procs * m - SUCC - FAIL))
	((LOST > 0)) || LOST=0
	WALL=$(calc "$t1 - $t0")
}

# show_errors NAME: the start of the SIPp error logs of a run.
show_errors() {
	local f
	for f in "$WORK/$1".*.err; do
		[[ -s $f ]] || continue
		log "$(basename "$f"):"
		head -c 1200 "$f" >&2
		echo >&2
	done
}

# --- servers ---------------------------------------------------------------

SERVER_PID=
SERVER_ADDR=
SERVER_PIDS=() # every process whose CPU counts for the server

start_switchboard() { # DB CONFIG_EXTRA
	local db=$1 cfg=$WORK/switchboard.yaml port
	port=$(free_port)
	SB_HTTP=127.0.0.1:$(free_port)
	cat >"$cfg" <<EOF
domain: $DOMAIN
database: $db
log: {level: warn}
sip:
  listen: [udp://127.0.0.1:$port]
http:
  listen: $SB_HTTP
  https: {listen: ""} # not measured here; its default port is fixed
# SIPp is a load generator on loopback: exempt from the per-source flood
# limit, as Kamailio's config here has no pike either.
security: {flood: {exempt: [127.0.0.0/8]}}
${SB_EXTRA:-}
${SB_CONFIG:-}
EOF
	taskset -c $SERVER_CPU "$WORK/switchboard" serve --config "$cfg" 2>"$WORK/switchboard.log" &
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
	SERVER_PIDS=("$SERVER_PID")
	wait_udp "$port" || die "switchboard did not listen on $port: $(tail -5 "$WORK/switchboard.log")"
	if [[ -n ${SB_CONSOLE_PAGE:-} ]]; then
		# One operations console page open: its live stream (SSE), as the
		# page holds it, for the whole run (the cost of the console).
		"$WORK/switchboard" admin add bench --password bench --config "$cfg" >/dev/null
		local tok
		tok=$("$WORK/switchboard" admin token bench --config "$cfg")
		curl -sN -H "Authorization: Bearer $tok" "http://$SB_HTTP/admin/events" >"$WORK/console-events.log" &
		PIDS+=($!)
	fi
	SERVER_ADDR=127.0.0.1:$port
	SERVER_PORT=$port
}

start_kamailio() { # DB
	local db=$1 port run=$WORK/kamrun
	port=$(free_port)
	mkdir -p "$run"
	# Kamailio's children are its workers; -m 1024 MiB shared memory (with
	# 256 its transactions ran out of it near 1,600 calls/s: a setting,
	# not its CPU, was the limit).
	taskset -c $SERVER_CPU kamailio -f "$KAMCFG" -DD -E -m 1024 -M 16 -Y "$run" -w "$run" \
		-l "udp:127.0.0.1:$port" \
		-A "DBURL=\"sqlite:///$db\"" -A "DOMAIN=\"$DOMAIN\"" -A "CTLSOCK=\"unix:$run/ctl\"" \
		>"$WORK/kamailio.log" 2>&1 &
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
	wait_udp "$port" || die "kamailio did not listen on $port: $(tail -5 "$WORK/kamailio.log")"
	sleep 0.5
	mapfile -t SERVER_PIDS < <(echo "$SERVER_PID"; ps -o pid= --ppid "$SERVER_PID" | tr -d ' ')
	SERVER_ADDR=127.0.0.1:$port
	SERVER_PORT=$port
}

# make_users PEER N: a fresh database with N users (u000001.. with password
# pw-u000001..) for PEER, and $WORK/users.csv for SIPp. Sets DB.
make_users() {
	local peer=$1 n=$2
	DB=$WORK/$peer-$n.db
	rm -f "$DB"*
	case $peer in
	switchboard)
		"$WORK/mkusers" -db "$DB" -realm "$DOMAIN" -n "$n" -prefix u >"$WORK/users.csv"
		;;
	kamailio)
		{
			cat /usr/share/kamailio/db_sqlite/standard-create.sql /usr/share/kamailio/db_sqlite/auth_db-create.sql
			echo "BEGIN;"
			awk -v n="$n" -v d="$DOMAIN" 'BEGIN {for (i=1;i<=n;i++) {u=sprintf("u%06d",i); printf "INSERT INTO subscriber(username,domain,password) VALUES(\x27%s\x27,\x27%s\x27,\x27pw-%s\x27);\n", u, d, u}}'
			echo "COMMIT;"
		} | sqlite3 "$DB"
		awk -v n="$n" 'BEGIN {print "SEQUENTIAL"; for (i=1;i<=n;i++) {u=sprintf("u%06d",i); printf "%s;pw-%s;[authentication username=%s password=pw-%s]\n", u, u, u, u}}' >"$WORK/users.csv"
		;;
	esac
	# Two more for the calls: alice calls bob.
	printf 'SEQUENTIAL\nu000001;pw-u000001;[authentication username=u000001 password=pw-u000001]\n' >"$WORK/alice.csv"
	printf 'SEQUENTIAL\nu000002;pw-u000002;[authentication username=u000002 password=pw-u000002]\n' >"$WORK/bob.csv"
}

start_peer() { # PEER
	case $1 in
	switchboard) start_switchboard "$DB" ;;
	kamailio) start_kamailio "$DB" ;;
	esac
}

# --- benchmarks -------------------------------------------------------------

declare -A RESULT

# measure_step C0 C1 D0 D1 S0 S1 G0 G1 EXTRA: from server CPU ticks, machine
# and server-socket UDP drop counters and SIPp CPU seconds before and after a
# step (EXTRA: more SIPp CPU seconds, the UAS), sets US (server CPU us per
# successful call), SRVCPU and GENCPU (server and SIPp CPU use, % of a core),
# SDROPS (server socket drops) and STEPINFO (all of it, for the log).
measure_step() {
	US=- SRVCPU=- GENCPU=-
	((SUCC > 0)) && US=$(calc "int(($2 - $1) * 1000000 / $CLK_TCK / $SUCC)")
	SRVCPU=$(calc "int(($2 - $1) / $CLK_TCK / $WALL * 100)")%
	GENCPU=$(calc "int(($8 - $7 + $9) / $WALL * 100)")%
	SDROPS=$(($6 - $5))
	STEPINFO="${US}us server CPU each, CPU server $SRVCPU SIPp $GENCPU, drops: server socket $SDROPS, other UDP $(($4 - $3 - SDROPS))"
}

bench_register() { # PEER
	local peer=$1 rate best=0 clean=0 best_us=- best_drops=- best_srv=- best_gen=- c0 c1 d0 d1 s0 s1 g0 g1 count ppm
	make_users "$peer" "$USERS"
	start_peer "$peer"
	log "$peer: registrations, ${STEP_SECONDS}s per step, rates: $REG_RATES"
	local tries=0 redo= rates=($REG_RATES) i=0
	while ((i < ${#rates[@]})); do
		if [[ -n $redo ]]; then
			rate=$redo redo=
		else
			rate=${rates[i]}
			i=$((i + 1))
		fi
		count=$((rate * STEP_SECONDS))
		c0=$(cpu_ticks "${SERVER_PIDS[@]}")
		child_cpu
		d0=$(rcvbuf_errors) s0=$(sock_drops "$SERVER_PORT") g0=$CHILD_CPU
		run_sipp "reg-$peer-$rate" "$rate" "$count" $((rate * 2)) $((STEP_SECONDS * 3)) \
			-sf "$SCEN/register.xml" -inf "$WORK/users.csv" -key domain "$DOMAIN" -key expires 3600 "$SERVER_ADDR"
		c1=$(cpu_ticks "${SERVER_PIDS[@]}")
		child_cpu
		d1=$(rcvbuf_errors) s1=$(sock_drops "$SERVER_PORT") g1=$CHILD_CPU
		measure_step "$c0" "$c1" "$d0" "$d1" "$s0" "$s1" "$g0" "$g1" 0
		ppm=$((((FAIL + LOST) * 1000000) / count))
		local ok=no
		# Pass: < 0.1% failed or unfinished, and all started on time (the
		# rate was held: SIPp slows down when -l calls are pending).
		if ((ppm < MAX_FAIL_PPM && CREATED <= STEP_SECONDS + 1)); then
			ok=yes
		fi
		log "$peer: REGISTER $rate/s: $SUCC ok, $FAIL failed, $LOST unfinished, $RETRANS retrans, started in ${CREATED}s, $STEPINFO -> $ok"
		if [[ $ok == yes ]]; then
			best=$rate best_us=$US best_drops=$SDROPS best_srv=$SRVCPU best_gen=$GENCPU tries=0
			((RETRANS * 1000 <= count)) && clean=$rate
		else
			show_errors "reg-$peer-$rate"
			tries=$((tries + 1))
			((tries > RETRIES)) && break
			log "$peer: trying $rate/s again"
			redo=$rate
		fi
		sleep 2
	done
	stop_server
	RESULT[$peer,reg]=$best RESULT[$peer,reg_us]=$best_us RESULT[$peer,reg_drops]=$best_drops RESULT[$peer,reg_clean]=$clean
	RESULT[$peer,reg_cpu]="$best_srv / $best_gen"
}

bench_calls() { # PEER
	local peer=$1 rate best=0 clean=0 best_us=- best_drops=- best_srv=- best_gen=- c0 c1 d0 d1 s0 s1 g0 g1 u0 u1 count ppm uas_port uas_pid uas_sipp
	make_users "$peer" 10
	start_peer "$peer"
	# A SIPp UAS cannot register itself: register bob's Contact from the port
	# the UAS then listens on.
	uas_port=$(free_port)
	timeout 20 sipp -nostdin -sf "$SCEN/register.xml" -inf "$WORK/bob.csv" -key domain "$DOMAIN" -key expires 3600 \
		-i 127.0.0.1 -p "$uas_port" -m 1 -timeout 10s -timeout_error "$SERVER_ADDR" >"$WORK/reg-bob.out" 2>&1 ||
		die "$peer: registering the UAS failed: $(tail -20 "$WORK/reg-bob.out")"
	local total_calls=0 steps=0 r
	for r in $CALL_RATES; do
		total_calls=$((total_calls + r * STEP_SECONDS * (RETRIES + 1)))
		steps=$((steps + RETRIES + 1))
	done
	timeout -s KILL $((steps * (STEP_SECONDS * 3 + HOLD_MS / 1000 + 10))) taskset -c $SIPP_CPU sipp -nostdin -sf "$SCEN/uas.xml" \
		-i 127.0.0.1 -p "$uas_port" -m "$total_calls" -buff_size 4194304 -max_recv_loops 10000 \
		-trace_stat -stf "$WORK/uas-$peer.csv" -fd 3600 >"$WORK/uas-$peer.out" 2>&1 &
	uas_pid=$!
	PIDS+=("$uas_pid")
	wait_udp "$uas_port" || die "UAS did not start"
	uas_sipp=$(ps -o pid= --ppid "$uas_pid" | tr -d ' ') # timeout's child: SIPp
	log "$peer: calls (${HOLD_MS} ms each), ${STEP_SECONDS}s per step, rates: $CALL_RATES"
	local tries=0 redo= rates=($CALL_RATES) i=0
	while ((i < ${#rates[@]})); do
		if [[ -n $redo ]]; then
			rate=$redo redo=
		else
			rate=${rates[i]}
			i=$((i + 1))
		fi
		count=$((rate * STEP_SECONDS))
		c0=$(cpu_ticks "${SERVER_PIDS[@]}")
		child_cpu
		d0=$(rcvbuf_errors) s0=$(sock_drops "$SERVER_PORT") g0=$CHILD_CPU u0=$(cpu_ticks "$uas_sipp")
		run_sipp "call-$peer-$rate" "$rate" "$count" $((rate * (HOLD_MS / 1000 + 3))) $((STEP_SECONDS * 3 + HOLD_MS / 1000)) \
			-sf "$SCEN/uac_invite_auth.xml" -inf "$WORK/alice.csv" -key domain "$DOMAIN" \
			-s u000002 -d "$HOLD_MS" "$SERVER_ADDR"
		c1=$(cpu_ticks "${SERVER_PIDS[@]}")
		child_cpu
		d1=$(rcvbuf_errors) s1=$(sock_drops "$SERVER_PORT") g1=$CHILD_CPU u1=$(cpu_ticks "$uas_sipp")
		measure_step "$c0" "$c1" "$d0" "$d1" "$s0" "$s1" "$g0" "$g1" "$(calc "($u1 - $u0) / $CLK_TCK")"
		ppm=$((((FAIL + LOST) * 1000000) / count))
		local ok=no
		if ((ppm < MAX_FAIL_PPM && CREATED <= STEP_SECONDS + 1)); then
			ok=yes
		fi
		log "$peer: calls $rate/s: $SUCC ok, $FAIL failed, $LOST unfinished, $RETRANS retrans, started in ${CREATED}s, $STEPINFO -> $ok"
		if [[ $ok == yes ]]; then
			best=$rate best_us=$US best_drops=$SDROPS best_srv=$SRVCPU best_gen=$GENCPU tries=0
			((RETRANS * 1000 <= count)) && clean=$rate
		else
			show_errors "call-$peer-$rate"
			tries=$((tries + 1))
			((tries > RETRIES)) && break
			log "$peer: trying $rate/s again"
			redo=$rate
		fi
		# Let the calls of this step end (BYE, Timer J) before the next.
		sleep 3
	done
	kill "$uas_pid" 2>/dev/null || true
	wait "$uas_pid" 2>/dev/null || true
	stop_server
	RESULT[$peer,call]=$best RESULT[$peer,call_us]=$best_us RESULT[$peer,call_drops]=$best_drops RESULT[$peer,call_clean]=$clean
	RESULT[$peer,call_cpu]="$best_srv / $best_gen"
}

# metric NAME: a value from switchboard's /metrics.
metric() {
	curl -s --max-time 5 "http://$SB_HTTP/metrics" | awk -v m="$1" '$1 == m {printf "%d\n", $2}'
}

# live_heap: switchboard's live Go heap (bytes): heap_alloc just after a
# garbage collection. The server is idle then, so this waits for the
# runtime's periodic forced collection (every 2 minutes), at most 150 s.
live_heap() {
	local n0 i
	n0=$(metric go_gc_duration_seconds_count)
	for i in $(seq 150); do
		sleep 1
		(($(metric go_gc_duration_seconds_count) > n0)) && break
	done
	metric go_memstats_heap_alloc_bytes
}

# mem_now PEER: bytes the server holds: VmRSS (switchboard) or shared memory
# in use (Kamailio, whose workers share one preallocated segment).
mem_now() {
	case $1 in
	switchboard) awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$SERVER_PID/status" ;;
	kamailio) kamcmd -s "unix:$WORK/kamrun/ctl" core.shmmem | awk '/real_used:/ {print $2}' ;;
	esac
}

bench_memory() { # PEER
	local peer=$1 before after
	make_users "$peer" "$MEM_USERS"
	start_peer "$peer"
	sleep 1
	before=$(mem_now "$peer")
	local heap0= heap1=
	[[ $peer == switchboard ]] && heap0=$(live_heap)
	SIPP_PROCS=1 run_sipp "mem-$peer" 2000 "$MEM_USERS" 4000 $((MEM_USERS / 2000 * 3 + 30)) \
		-sf "$SCEN/register.xml" -inf "$WORK/users.csv" -key domain "$DOMAIN" -key expires 3600 "$SERVER_ADDR"
	# Let transactions end first: a UDP non-INVITE server transaction lives
	# 64*T1 = 32 s after its answer (RFC 3261 §17.2.2, Timer J).
	sleep "${SETTLE_SECONDS:-40}"
	after=$(mem_now "$peer")
	[[ $peer == switchboard ]] && heap1=$(live_heap)
	log "$peer: memory $before -> $after bytes for $SUCC registrations ($FAIL failed)${heap0:+; live Go heap $heap0 -> $heap1}"
	if [[ -n $heap0 && -n $heap1 ]] && ((SUCC > 0)); then
		RESULT[$peer,heap]=$(((heap1 - heap0) / SUCC))
	fi
	if ((SUCC > 0)); then
		RESULT[$peer,mem]=$(((after - before) / SUCC))
	else
		RESULT[$peer,mem]=-
	fi
	RESULT[$peer,mem_mib]="$(calc "int($before / 104857.6) / 10") -> $(calc "int($after / 104857.6) / 10")"
	stop_server
}

# --- main --------------------------------------------------------------------

for peer in "${PEERS[@]}"; do
	case $peer in
	switchboard)
		log "building switchboard"
		go build -o "$WORK/switchboard" ./cmd/switchboard
		go build -o "$WORK/mkusers" ./bench/sip/mkusers
		# Media stays on loopback, and is not relayed (SB_RELAY=never): this
		# is a SIP benchmark, and Kamailio here has no RTP proxy either.
		# TURN is off: its default ports are fixed and it is not measured here.
		SB_EXTRA=
		if grep -q '^media:' configs/switchboard.yaml; then
			SB_EXTRA="media: {relay: ${SB_RELAY:-never}, public_ip: 127.0.0.1, bind_ip: 127.0.0.1}"
		fi
		if grep -q '^turn:' configs/switchboard.yaml; then
			SB_EXTRA+=$'\nturn: {enabled: false}'
		fi
		;;
	kamailio)
		if ! command -v kamailio >/dev/null || [[ ! -e /usr/lib/x86_64-linux-gnu/kamailio/modules/db_sqlite.so ]] || ! command -v sqlite3 >/dev/null; then
			[[ $(id -u) -eq 0 ]] || die "kamailio missing: apt-get install kamailio kamailio-sqlite-modules sqlite3"
			log "installing kamailio"
			DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends kamailio kamailio-sqlite-modules sqlite3 >/dev/null
		fi
		;;
	*) die "unknown peer $peer (switchboard, kamailio)" ;;
	esac
done

for peer in "${PEERS[@]}"; do
	[[ " $STAGES " == *" reg "* ]] && bench_register "$peer"
	[[ " $STAGES " == *" call "* ]] && bench_calls "$peer"
	[[ " $STAGES " == *" mem "* ]] && bench_memory "$peer"
done

kver=$(kamailio -v 2>/dev/null | head -1 | awk '{print $3}' || true)
echo
echo "SIP benchmark, $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), server on core $SERVER_CPU, SIPp ($SIPP_PROCS UAC processes) on core $SIPP_CPU"
echo "steps of ${STEP_SECONDS}s; pass = <0.1% failed or unfinished calls and the rate held; calls hold ${HOLD_MS} ms"
echo "(a failed step is retried $RETRIES time(s); the ladder stops at the first step that fails every try)"
echo
printf '| %-42s |' "measure"
for peer in "${PEERS[@]}"; do
	[[ $peer == kamailio ]] && peer="kamailio ${kver:-}"
	printf ' %-18s |' "$peer"
done
echo
printf '| %s |' "$(printf -- '-%.0s' $(seq 42))"
for _ in "${PEERS[@]}"; do printf ' %s |' "$(printf -- '-%.0s' $(seq 18))"; done
echo
row() { # LABEL KEY
	printf '| %-42s |' "$1"
	for peer in "${PEERS[@]}"; do printf ' %-18s |' "${RESULT[$peer,$2]:--}"; done
	echo
}
row "registrations/s with digest (highest pass)" reg
row "  highest with <0.1% retransmissions" reg_clean
row "  server CPU us per registration" reg_us
row "  CPU at that rate: server / SIPp (% core)" reg_cpu
row "  server socket drops at that rate" reg_drops
row "calls/s through the proxy (highest pass)" call
row "  highest with <0.1% retransmissions" call_clean
row "  server CPU us per call" call_us
row "  CPU at that rate: server / SIPp (% core)" call_cpu
row "  server socket drops at that rate" call_drops
row "memory per registration (bytes)" mem
row "  memory before -> after (MiB)" mem_mib
row "  live Go heap per registration (bytes)" heap
