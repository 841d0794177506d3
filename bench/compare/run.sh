#!/usr/bin/env bash
# Side-by-side SIP benchmark on loopback: switchboard (built from this
# repository) and Kamailio 5.6 from Debian in two configurations — its usual
# registrar (auth_db + db_sqlite, bench/sip/kamailio/kamailio.cfg) and a lean
# one (passwords loaded once into an htable, kamailio-htable.cfg) — driven
# back to back by the same scenarios (test/interop/testdata's SIPp ones, sent
# by bench/compare/sipload, or by SIPp with LOADGEN=sipp), users and ramp.
#
# For each server and workload (STAGES: reg, call, mem):
#   reg   REGISTER -> 401 -> REGISTER with digest -> 200, USERS users;
#   call  INVITE -> 407 -> ACK, INVITE with credentials -> 100/180/200 ->
#         ACK, HOLD_MS, BYE -> 200, through the record-routing proxy to SIPp
#         UASes (UAS_PROCS callees, each called by its own UAC);
#   mem   MEM_USERS users register once (2,000/s); the server's memory
#         before and SETTLE_SECONDS after gives the memory per binding.
# The rate ramp: fixed-rate trials of TRIAL_SECONDS, the rate times 1.25
# after each pass until a trial fails (a failed trial is run once more),
# then bisection between the last pass and the first failure until they
# are within 5 %. A trial passes when fewer than 0.1 % of its calls failed
# or were unfinished, all started on time (SIPp slows down when the server
# lags), the mean response time (SIPp's rtd: first request to final 2xx) is
# at most 100 ms, and no datagram was dropped by a full socket buffer,
# neither at the server's socket nor anywhere on the machine (UDP
# RcvbufErrors of /proc/net/snmp, which counts SIPp's sockets too).
#
# Reported per server: the highest passing rate, server CPU per operation at
# that rate, peak memory during that trial, memory per binding at rest; and
# switchboard's ratios to each Kamailio. Memory is VmRSS for switchboard
# and the PSS summed over all processes for Kamailio (its workers share one
# shared-memory segment, which RSS would count once per process). Kamailio
# runs with -m 4096 (KAM_SHM: 4 GiB shared memory) and its TLSF memory manager
# (KAM_MM; Debian's default, qm, was 40 % of its CPU) so that its limit is
# CPU, not a setting.
#
# The server runs on core 0, SIPp on core 1 (taskset). As root, the socket
# buffer limits are raised for the run (and restored after). Every SIPp run
# is bounded in count (-m) and time (-timeout, then timeout(1)); every
# process started here is stopped by PID on exit.
#
# Usage: bench/compare/run.sh [switchboard] [switchboard-console-off]
#                             [kamailio-sqlite] [kamailio-htable]
# (switchboard-console-off: the same binary with `console: {enabled: false}`,
# to show what the operations console and its call traces cost.)
# Knobs (environment): STAGES ("reg call mem"), TRIAL_SECONDS (10),
# BISECT_PCT (5: the bisection's end, e.g. 2 to tell apart two builds
# closer than 5 %),
# REG_START (2000), CALL_START (400), USERS (20000), MEM_USERS (20000),
# SETTLE_SECONDS (40), HOLD_MS (1000), SIPP_PROCS (2 UAC processes for
# registrations), UAS_PROCS (2 UAC/UAS pairs for calls), MAX_TRIALS (14 per
# ramp), SB_CONFIG (YAML appended to switchboard's configuration, e.g.
# "console: {enabled: false}"), CONSOLE_PAGE=1 (one operations console page
# open on switchboard through the run: its live event stream, read on the
# SIPp core), ALLOCS=1 (switchboard built with -tags pprof, or a
# SWITCHBOARD_BIN so built: each trial also reports the Go allocations per
# operation), KEEP=1 keeps the work directory, FIXED_RATE=N (no ramp: one
# trial at N/s per stage, for the CPU per operation below saturation) with
# ROUNDS=K (all the servers one after the other, K times, so that a drift
# of the machine hits each of them alike; also with the ramp, which then
# reports the median round), SWITCHBOARD_BIN=path (that
# binary instead of one built from this tree, e.g. to compare two builds).
# LOADGEN (go, the default, or sipp): go drives the scenarios with
# bench/compare/sipload (one UAC process, one UAS; SIPP_PROCS and UAS_PROCS
# still apply): ~87-107 us of the load core per call and ~28 us per
# registration against SIPp's ~260 and ~50, so that a server as lean as
# Kamailio, not the generator, is the limit. It handles what arrived once
# per millisecond (batched reads and writes): arrivals come in 1 ms
# batches, which made Kamailio 9-16 % cheaper per call at 2,500/s (its
# workers wake up less often) and switchboard 3 %; compare CPU per
# operation below saturation with either generator, the maximum with
# sipload. The mem stage always uses SIPp (2,000/s is no generator limit).
# Each trial also reports the CPU the load generators used while sending:
# near 100 % of their core the load generators, not the server, would be
# the limit.
# Needs: go, sip-tester, util-linux (taskset); kamailio,
# kamailio-sqlite-modules, sqlite3 (installed with apt-get when missing and
# root).
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
SCEN=$ROOT/test/interop/testdata
KAMDIR=$ROOT/bench/sip/kamailio
# Kamailio's memory manager: Debian's build defaults to qm, whose malloc
# was 40 % of Kamailio's CPU per registration in the htable configuration
# (88 µs each at 9,000/s; 36 µs with tlsf, 42 with fm): a setting, not
# Kamailio's limit.
KAM_MM=${KAM_MM:-tlsf}
# Kamailio's shared memory (MiB). With 1024, tm ran out of it ("new_t():
# out of mem") at ~8,000 calls/s of 1 s (transactions live ~5 s after
# their end): a setting, not its limit. PSS counts only what it touches.
KAM_SHM=${KAM_SHM:-4096}

STAGES=${STAGES:-"reg call mem"}
TRIAL_SECONDS=${TRIAL_SECONDS:-10}
REG_START=${REG_START:-2000}
CALL_START=${CALL_START:-400}
USERS=${USERS:-20000}
MEM_USERS=${MEM_USERS:-20000}
SETTLE_SECONDS=${SETTLE_SECONDS:-40}
HOLD_MS=${HOLD_MS:-1000}
LOADGEN=${LOADGEN:-go}
case $LOADGEN in
sipp) GEN_NAME=SIPp ;;
go) GEN_NAME=sipload ;;
*) echo "LOADGEN must be sipp or go" >&2; exit 2 ;;
esac
# One sipload process per role is enough (it is ~3x leaner than SIPp).
SIPP_PROCS=${SIPP_PROCS:-$([[ $LOADGEN == go ]] && echo 1 || echo 2)}
UAS_PROCS=${UAS_PROCS:-$([[ $LOADGEN == go ]] && echo 1 || echo 2)}
MAX_TRIALS=${MAX_TRIALS:-14}
BISECT_PCT=${BISECT_PCT:-5}
DOMAIN=switchboard.local
MAX_FAIL_PPM=1000     # 0.1 %
MAX_MEAN_RT_MS=100
SERVER_CPU=0
SIPP_CPU=1
SERVERS=("$@")
((${#SERVERS[@]})) || SERVERS=(switchboard kamailio-sqlite kamailio-htable)

. "$ROOT/bench/lib/harness.sh"

command -v sipp >/dev/null || die "sipp not found: apt-get install sip-tester"
command -v taskset >/dev/null || die "taskset not found: apt-get install util-linux"
(($(nproc) >= 2)) || die "needs 2 cores (server and SIPp on one each)"
[[ $BISECT_PCT =~ ^[0-9]+([.][0-9]+)?$ ]] && (($(calc "($BISECT_PCT >= 0.5) ? 1 : 0"))) || die "BISECT_PCT must be a number of percent, at least 0.5"

harness_init switchboard-compare 1.5

# --- measuring ---------------------------------------------------------------

PAGE_KB=$(($(getconf PAGESIZE) / 1024))

# gen_ticks: clock ticks used so far by the SIPp processes running (the
# children of the timeout(1) wrappers in UACS and UAS_PIDS). (Process times,
# not the core's line of /proc/stat, which undercounts on this VM.)
gen_ticks() {
	local w kids=()
	for w in "${UACS[@]}" "${UAS_PIDS[@]}"; do
		mapfile -t -O "${#kids[@]}" kids < <(ps -o pid= --ppid "$w" | tr -d ' ')
	done
	cpu_ticks "${kids[@]}"
}

# mem_kb: the server's memory (KiB): VmRSS of switchboard, the PSS summed
# over Kamailio's processes.
mem_kb() {
	local p t=0 v
	case $SERVER in
	switchboard*) awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status" ;;
	*)
		for p in "${SERVER_PIDS[@]}"; do
			v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
			t=$((t + ${v:-0}))
		done
		echo "$t"
		;;
	esac
}

# watch_mem FILE: samples mem_kb every 0.5 s into FILE until killed.
watch_mem() {
	while :; do
		mem_kb >>"$1"
		sleep 0.5
	done
}

# ms HH:MM:SS:mmmuuu (SIPp's duration format) -> milliseconds.
ms() { awk -F: '{printf "%d\n", $1 * 3600000 + $2 * 60000 + $3 * 1000 + $4 / 1000}' <<<"$1"; }

# --- servers -------------------------------------------------------------------

SERVER= SERVER_PID= SERVER_PORT= SERVER_ADDR=
SERVER_PIDS=()

# make_users N: a fresh database with N users u000001.. (password pw-NAME)
# for $SERVER, and $WORK/users.csv for SIPp. Sets DB.
make_users() {
	local n=$1
	DB=$WORK/$SERVER-$n.db
	rm -f "$DB"*
	case $SERVER in
	switchboard*)
		"$WORK/mkusers" -db "$DB" -realm "$DOMAIN" -n "$n" -prefix u >"$WORK/users.csv"
		;;
	kamailio-sqlite)
		{
			cat /usr/share/kamailio/db_sqlite/standard-create.sql /usr/share/kamailio/db_sqlite/auth_db-create.sql
			echo "BEGIN;"
			awk -v n="$n" -v d="$DOMAIN" 'BEGIN {for (i=1;i<=n;i++) {u=sprintf("u%06d",i); printf "INSERT INTO subscriber(username,domain,password) VALUES(\x27%s\x27,\x27%s\x27,\x27pw-%s\x27);\n", u, d, u}}'
			echo "COMMIT;"
		} | sqlite3 "$DB"
		;;
	kamailio-htable)
		{
			cat /usr/share/kamailio/db_sqlite/standard-create.sql /usr/share/kamailio/db_sqlite/htable-create.sql
			echo "BEGIN;"
			awk -v n="$n" 'BEGIN {for (i=1;i<=n;i++) {u=sprintf("u%06d",i); printf "INSERT INTO htable(key_name,key_type,value_type,key_value) VALUES(\x27%s\x27,0,0,\x27pw-%s\x27);\n", u, u}}'
			echo "COMMIT;"
		} | sqlite3 "$DB"
		;;
	esac
	if [[ $SERVER != switchboard* ]]; then
		awk -v n="$n" 'BEGIN {print "SEQUENTIAL"; for (i=1;i<=n;i++) {u=sprintf("u%06d",i); printf "%s;pw-%s;[authentication username=%s password=pw-%s]\n", u, u, u, u}}' >"$WORK/users.csv"
	fi
}

# user_csv FILE I: an injection file with the one user u00000I.
user_csv() { printf 'SEQUENTIAL\nu%06d;pw-u%06d;[authentication username=u%06d password=pw-u%06d]\n' "$2" "$2" "$2" "$2" >"$1"; }

start_server() {
	PPROF_ADDR=
	SERVER_PORT=$(free_port)
	SERVER_ADDR=127.0.0.1:$SERVER_PORT
	case $SERVER in
	switchboard*)
		local cfg=$WORK/switchboard.yaml http_port
		http_port=$(free_port)
		cat >"$cfg" <<EOF
domain: $DOMAIN
database: $DB
log: {level: warn}
sip: {listen: [udp://127.0.0.1:$SERVER_PORT]}
http: {listen: 127.0.0.1:$http_port, https: {listen: ""}}
# SIPp is a load generator on loopback: exempt from the per-source flood
# limit, as the Kamailio configurations have no pike either.
security: {flood: {exempt: [127.0.0.0/8]}}
# A SIP benchmark: no media relay (Kamailio has no RTP proxy here), no TURN
# (fixed ports), no web phone.
media: {relay: never, public_ip: 127.0.0.1, bind_ip: 127.0.0.1}
turn: {enabled: false}
webrtc: {enabled: false}
${SB_CONFIG:-}
EOF
		[[ $SERVER == switchboard-console-off ]] && echo "console: {enabled: false}" >>"$cfg"
		if [[ ${ALLOCS:-} ]]; then
			PPROF_ADDR=127.0.0.1:$(free_port)
		fi
		SWITCHBOARD_PPROF=$PPROF_ADDR taskset -c $SERVER_CPU "$WORK/switchboard" serve --config "$cfg" 2>"$WORK/switchboard.log" &
		SERVER_PID=$!
		PIDS+=("$SERVER_PID")
		SERVER_PIDS=("$SERVER_PID")
		wait_udp "$SERVER_PORT" || die "switchboard did not listen: $(tail -5 "$WORK/switchboard.log")"
		if [[ ${CONSOLE_PAGE:-} && $SERVER == switchboard ]]; then
			# One operations console page open: its live stream (SSE),
			# as the page holds it, for the whole run.
			"$WORK/switchboard" admin add bench --password bench-password --config "$cfg" >/dev/null
			local tok
			tok=$("$WORK/switchboard" admin token bench --config "$cfg")
			taskset -c $SIPP_CPU curl -sN -H "Authorization: Bearer $tok" "http://127.0.0.1:$http_port/admin/events" \
				>"$WORK/console-events-$SERVER.log" &
			PIDS+=($!)
			sleep 1
			[[ -s $WORK/console-events-$SERVER.log ]] || die "the console's event stream sent nothing"
		fi
		;;
	kamailio-*)
		local run=$WORK/kamrun cfg=$KAMDIR/kamailio.cfg
		[[ $SERVER == kamailio-htable ]] && cfg=$KAMDIR/kamailio-htable.cfg
		rm -rf "$run" && mkdir -p "$run"
		taskset -c $SERVER_CPU kamailio -f "$cfg" -DD -E -m "$KAM_SHM" -M 16 -x "$KAM_MM" -Y "$run" -w "$run" \
			-l "udp:127.0.0.1:$SERVER_PORT" \
			-A "DBURL=\"sqlite:///$DB\"" -A "DOMAIN=\"$DOMAIN\"" -A "CTLSOCK=\"unix:$run/ctl\"" \
			>"$WORK/$SERVER.log" 2>&1 &
		SERVER_PID=$!
		PIDS+=("$SERVER_PID")
		wait_udp "$SERVER_PORT" || die "$SERVER did not listen: $(tail -5 "$WORK/$SERVER.log")"
		sleep 1
		mapfile -t SERVER_PIDS < <(echo "$SERVER_PID"; ps -o pid= --ppid "$SERVER_PID" | tr -d ' ')
		;;
	esac
	sleep 1
}

# --- trials ----------------------------------------------------------------------

# sipp_uac NAME PORT RATE COUNT LIMIT TIMEOUT ARGS...: starts one SIPp UAC
# on the SIPp core in the background, on local PORT (0: a free one); its PID
# is appended to UACS.
UACS=()
sipp_uac() {
	local name=$1 port=$2 rate=$3 count=$4 limit=$5 tmo=$6
	shift 6
	((port)) || port=$(free_port)
	timeout -s KILL $((tmo + 20)) taskset -c $SIPP_CPU sipp -nostdin \
		-i 127.0.0.1 -p "$port" -r "$rate" -rp 1000 -m "$count" -l "$limit" \
		-buff_size 8388608 -max_recv_loops 10000 -max_sched_loops 10000 \
		-timeout "${tmo}s" -timeout_error \
		-trace_stat -stf "$WORK/$name.csv" -fd 1 \
		-trace_err -error_file "$WORK/$name.err" \
		"$@" >"$WORK/$name.out" 2>&1 &
	UACS+=($!)
	PIDS+=($!)
}

# sipload_uac NAME RATE COUNT LIMIT TIMEOUT ARGS...: the same with sipload
# (LOADGEN=go), its result line in $WORK/NAME.res.
sipload_uac() {
	local name=$1 rate=$2 count=$3 limit=$4 tmo=$5
	shift 5
	timeout -s KILL $((tmo + 20)) taskset -c $SIPP_CPU "$WORK/sipload" -server "$SERVER_ADDR" -domain "$DOMAIN" \
		-rate "$rate" -count "$count" -limit "$limit" -wait "${tmo}s" "$@" >"$WORK/$name.res" 2>"$WORK/$name.err" &
	UACS+=($!)
	PIDS+=($!)
}

# res_field FILE KEY: KEY's value in a sipload result line.
res_field() { tr ' ' '\n' <"$1" | awk -F= -v k="$2" '$1 == k {print $2; f = 1} END {if (!f) print 0}'; }

# trial KIND RATE: one fixed-rate trial; sets PASS (yes/no), INFO, US (server
# CPU us per operation), PEAK_KB.
trial() {
	local kind=$1 rate=$2 n procs i name count per tmo
	local c0 c1 d0 d1 s0 s1 g0 g1 t0 t1 succ=0 fail=0 lost=0 retr=0 created=0 rtsum=0 rtn=0 f
	case $kind in
	reg) procs=$SIPP_PROCS tmo=$((TRIAL_SECONDS * 3)) ;;
	call) procs=$UAS_PROCS tmo=$((TRIAL_SECONDS * 3 + HOLD_MS / 1000)) ;;
	esac
	per=$((rate / procs))
	((per > 0)) || per=1
	count=$((per * TRIAL_SECONDS))
	n=$((count * procs))
	UACS=()
	local a0 a1
	a0=$(go_allocs) # (before the CPU is read: the profile's own cost is not the trial's)
	c0=$(cpu_ticks "${SERVER_PIDS[@]}") d0=$(rcvbuf_errors) s0=$(sock_drops "$SERVER_PORT") g0=$(gen_ticks)
	: >"$WORK/mem.samples"
	watch_mem "$WORK/mem.samples" &
	local wpid=$!
	PIDS+=("$wpid")
	t0=$(date +%s.%N)
	rm -f "$WORK/gen.ticks"
	for ((i = 0; i < procs; i++)); do
		name=$kind-$SERVER-$rate-$i
		case $LOADGEN-$kind in
		go-reg)
			sipload_uac "$name" "$per" "$count" $((per * 2)) "$tmo" -mode reg -users "$USERS" -port "${REG_PORTS[i]}"
			;;
		go-call)
			sipload_uac "$name" "$per" "$count" $((per * (HOLD_MS / 1000 + 3))) "$tmo" -mode call \
				-caller "$(printf 'u%06d' $((1001 + i)))" -callee "$(printf 'u%06d' $((2 + i)))" -hold "${HOLD_MS}ms"
			;;
		sipp-reg)
			# The same port in every trial: the same Contact, so that
			# each trial refreshes the bindings of the one before
			# instead of adding one per user (max_contacts).
			sipp_uac "$name" "${REG_PORTS[i]}" "$per" "$count" $((per * 2)) "$tmo" \
				-sf "$SCEN/register.xml" -inf "$WORK/users.csv" -key domain "$DOMAIN" -key expires 3600 "$SERVER_ADDR"
			;;
		sipp-call)
			sipp_uac "$name" 0 "$per" "$count" $((per * (HOLD_MS / 1000 + 3))) "$tmo" \
				-sf "$SCEN/uac_invite_auth.xml" -inf "$WORK/caller$i.csv" -key domain "$DOMAIN" \
				-s "$(printf 'u%06d' $((2 + i)))" -d "$HOLD_MS" "$SERVER_ADDR"
			;;
		esac
	done
	# The SIPp processes' CPU over the sending part (the tail only waits
	# for the last calls to end), read before the UACs exit.
	sleep "$TRIAL_SECONDS"
	g1=$(gen_ticks)
	for f in "${UACS[@]}"; do wait "$f" || true; done
	t1=$(date +%s.%N)
	kill "$wpid" 2>/dev/null || true
	wait "$wpid" 2>/dev/null || true
	c1=$(cpu_ticks "${SERVER_PIDS[@]}") d1=$(rcvbuf_errors) s1=$(sock_drops "$SERVER_PORT")
	a1=$(go_allocs)
	for ((i = 0; i < procs; i++)); do
		f=$WORK/$kind-$SERVER-$rate-$i.csv
		if [[ $LOADGEN == go ]]; then
			f=${f%.csv}.res
			if [[ -s $f ]]; then
				local ok c
				ok=$(res_field "$f" ok)
				succ=$((succ + ok))
				fail=$((fail + $(res_field "$f" failed)))
				retr=$((retr + $(res_field "$f" retransmissions)))
				c=$(res_field "$f" created)
				((c > created)) && created=$c
				rtsum=$((rtsum + $(res_field "$f" mean_ms) * ok))
			else
				fail=$((fail + count))
				created=999
			fi
		elif [[ -s $f ]]; then
			succ=$((succ + $(stat_field "$f" 'SuccessfulCall(C)')))
			fail=$((fail + $(stat_field "$f" 'FailedCall(C)')))
			retr=$((retr + $(stat_field "$f" 'Retransmissions(C)')))
			local c rt
			c=$(created_after "$f" "$count")
			((c > created)) && created=$c
			rt=$(ms "$(stat_field "$f" 'ResponseTime1(C)')")
			rtsum=$((rtsum + rt * $(stat_field "$f" 'SuccessfulCall(C)')))
		else
			fail=$((fail + count))
			created=999
		fi
	done
	lost=$((n - succ - fail))
	((lost > 0)) || lost=0
	local mean=999999
	((succ > 0)) && mean=$((rtsum / succ))
	local ppm=$((((fail + lost) * 1000000) / n)) sdrops=$((s1 - s0)) mdrops=$((d1 - d0))
	US=-
	((succ > 0)) && US=$(calc "int(($c1 - $c0) * 1000000 / $CLK_TCK / $succ)")
	PEAK_KB=$(sort -n "$WORK/mem.samples" | tail -1)
	local cpu_pct
	cpu_pct=$(calc "int(($c1 - $c0) / $CLK_TCK / ($t1 - $t0) * 100)")
	# How much of a core the load generators used while sending.
	GEN_PCT=$(calc "int(($g1 - $g0) / $CLK_TCK / $TRIAL_SECONDS * 100)")
	PASS=no
	if ((ppm < MAX_FAIL_PPM && created <= TRIAL_SECONDS + 1 && mean <= MAX_MEAN_RT_MS && sdrops == 0 && mdrops == 0)); then
		PASS=yes
	fi
	INFO="$succ ok, $fail failed, $lost unfinished, $retr retransmissions, started in ${created}s, mean response ${mean} ms, server CPU ${US} us each (${cpu_pct}% of a core), $GEN_NAME ${GEN_PCT}% of a core, drops: server socket $sdrops, machine $mdrops, peak memory $((PEAK_KB / 1024)) MiB"
	if [[ $a0 && $a1 ]] && ((succ > 0)); then
		# Go heap allocations per operation, the whole process (ALLOCS=1).
		read -r m0 b0 <<<"$a0"
		read -r m1 b1 <<<"$a1"
		INFO="$INFO, $(((m1 - m0) / succ)) allocations and $(((b1 - b0) / succ / 1024)) KiB allocated each"
	fi
}

# go_allocs: "MALLOCS TOTALALLOC" of a switchboard built with -tags pprof
# (ALLOCS=1), from its runtime.MemStats; empty otherwise.
go_allocs() {
	[[ ${PPROF_ADDR:-} ]] || return 0
	curl -fs "http://$PPROF_ADDR/debug/pprof/heap?debug=1" |
		awk '/^# Mallocs = / {m = $4} /^# TotalAlloc = / {b = $4} END {if (m != "") print m, b}'
}

# ramp KIND START: the rate ramp (see the top); sets BEST, BEST_US, BEST_PEAK.
ramp() {
	local kind=$1 rate=$2 lo=0 hi=0 trials=0 tries
	BEST=0 BEST_US=- BEST_PEAK=0 BEST_GEN=-
	if [[ ${FIXED_RATE:-} ]]; then
		# One trial at the fixed rate (see FIXED_RATE at the top).
		trial "$kind" "$FIXED_RATE"
		log "$SERVER $kind $FIXED_RATE/s: $INFO -> $PASS"
		BEST=$FIXED_RATE BEST_US=$US BEST_PEAK=$PEAK_KB BEST_GEN=$GEN_PCT
		[[ $PASS == yes ]] || BEST="$FIXED_RATE (failed)"
		settle
		return
	fi
	# run_at RATE: a trial, run again once if it fails; returns 0 on a pass.
	run_at() {
		local r=$1
		for tries in 1 2; do
			trials=$((trials + 1))
			trial "$kind" "$r"
			log "$SERVER $kind $r/s: $INFO -> $PASS"
			if [[ $PASS == yes ]]; then
				if ((r > BEST)); then BEST=$r BEST_US=$US BEST_PEAK=$PEAK_KB BEST_GEN=$GEN_PCT; fi
				settle
				return 0
			fi
			settle
			((trials < MAX_TRIALS)) || return 1
		done
		return 1
	}
	# Up by 1.25 until a failure (down by 0.8 while the first fails).
	while ((trials < MAX_TRIALS)); do
		if run_at "$rate"; then
			lo=$rate
			((hi > 0)) && break
			rate=$(calc "int($rate * 1.25 + 0.5)")
		else
			hi=$rate
			((lo > 0)) && break
			rate=$(calc "int($rate * 0.8 + 0.5)")
			((rate >= 10)) || break
		fi
	done
	# Bisect to within BISECT_PCT.
	while ((lo > 0 && hi > lo && trials < MAX_TRIALS)) && (($(calc "(($hi - $lo) / $lo * 100 > $BISECT_PCT) ? 1 : 0"))); do
		local mid=$(((lo + hi) / 2))
		if run_at "$mid"; then lo=$mid; else hi=$mid; fi
	done
}

# settle: lets the trial's transactions (and calls) end before the next.
settle() { sleep "${TRIAL_GAP:-3}"; }

# record KIND: keeps this round's result for KIND (BEST, BEST_US, ...). With
# FIXED_RATE the figures reported are the last round's, with the CPU of
# each round listed; with a ramp and ROUNDS > 1 they are the median round's
# by rate, then CPU (the lower of the two middle ones for an even count), with each
# round's rate and CPU listed, so that one lucky or unlucky ramp on a
# drifting machine does not make the ratio.
record() {
	local k=$1 rows m rate us peak gen
	if [[ ${FIXED_RATE:-} ]]; then
		R[$SERVER,$k]=$BEST R[$SERVER,${k}_us]=$BEST_US R[$SERVER,${k}_peak]=$BEST_PEAK R[$SERVER,${k}_gen]=$BEST_GEN
		R[$SERVER,${k}_rounds]+="${R[$SERVER,${k}_rounds]:+, }$BEST_US"
		return
	fi
	R[$SERVER,${k}_all]+="${R[$SERVER,${k}_all]:+;}$BEST $BEST_US $BEST_PEAK $BEST_GEN"
	R[$SERVER,${k}_rounds]+="${R[$SERVER,${k}_rounds]:+, }$BEST/s $BEST_US µs"
	mapfile -t rows < <(tr ';' '\n' <<<"${R[$SERVER,${k}_all]}" | sort -n -k1,1 -k2,2)
	m=${rows[$(((${#rows[@]} - 1) / 2))]}
	read -r rate us peak gen <<<"$m"
	R[$SERVER,$k]=$rate R[$SERVER,${k}_us]=$us R[$SERVER,${k}_peak]=$peak R[$SERVER,${k}_gen]=$gen
}

# --- workloads ------------------------------------------------------------------

declare -A R

REG_PORTS=()
bench_reg() {
	local i
	REG_PORTS=()
	local p
	while ((${#REG_PORTS[@]} < SIPP_PROCS)); do
		p=$(free_port)
		[[ " ${REG_PORTS[*]} " == *" $p "* ]] || REG_PORTS+=("$p")
	done
	make_users "$USERS"
	start_server
	log "$SERVER: registrations, ${TRIAL_SECONDS}s trials from $REG_START/s"
	ramp reg "$REG_START"
	record reg
	stop_server
}

bench_call() {
	local i uas_port total steps
	make_users "$USERS"
	start_server
	# UAS i answers as u00000(2+i), called by UAC i as u(1001+i). A SIPp
	# UAS cannot register itself: its Contact is registered from its port.
	total=$((MAX_TRIALS * 10000 * TRIAL_SECONDS)) # a bound, far above any trial
	for ((i = 0; i < UAS_PROCS; i++)); do
		uas_port=$(free_port)
		if [[ $LOADGEN == go ]]; then
			# sipload's UAS registers itself, then answers (a second try on
			# a fresh port if it did not: once in a run it exited at once,
			# without a word).
			sipload_uas "$i" "$uas_port" || sipload_uas "$i" "$(free_port)" ||
				die "$SERVER: sipload UAS $i: $(tail -5 "$WORK/uas-$SERVER-$i.out")"
			continue
		fi
		user_csv "$WORK/callee$i.csv" $((2 + i))
		user_csv "$WORK/caller$i.csv" $((1001 + i))
		timeout 20 sipp -nostdin -sf "$SCEN/register.xml" -inf "$WORK/callee$i.csv" -key domain "$DOMAIN" -key expires 3600 \
			-i 127.0.0.1 -p "$uas_port" -m 1 -timeout 10s -timeout_error "$SERVER_ADDR" >"$WORK/reg-callee$i.out" 2>&1 ||
			die "$SERVER: registering UAS $i failed: $(tail -20 "$WORK/reg-callee$i.out")"
		timeout -s KILL "$UAS_TIMEOUT" taskset -c $SIPP_CPU sipp -nostdin \
			-sf "$SCEN/uas.xml" -i 127.0.0.1 -p "$uas_port" -m "$total" -buff_size 8388608 -max_recv_loops 10000 \
			-trace_err -error_file "$WORK/uas-$SERVER-$i.err" >"$WORK/uas-$SERVER-$i.out" 2>&1 &
		PIDS+=($!)
		UAS_PIDS+=($!)
		wait_udp "$uas_port" || die "UAS $i did not start"
	done
	log "$SERVER: calls (${HOLD_MS} ms each), ${TRIAL_SECONDS}s trials from $CALL_START/s"
	ramp call "$CALL_START"
	record call
	for i in "${UAS_PIDS[@]}"; do kill "$i" 2>/dev/null || true; wait "$i" 2>/dev/null || true; done
	UAS_PIDS=()
	stop_server
}
UAS_PIDS=()
# A UAS's bound (s): it serves every trial of a ramp.
UAS_TIMEOUT=$((MAX_TRIALS * (TRIAL_SECONDS * 3 + HOLD_MS / 1000 + 10)))

# sipload_uas I PORT: starts sipload's UAS I on PORT; fails unless it has
# registered within 10 s.
sipload_uas() {
	local i=$1 port=$2 w pid rc
	timeout -s KILL "$UAS_TIMEOUT" taskset -c $SIPP_CPU "$WORK/sipload" \
		-mode uas -server "$SERVER_ADDR" -domain "$DOMAIN" -user "$(printf 'u%06d' $((2 + i)))" -port "$port" \
		>"$WORK/uas-$SERVER-$i.out" 2>&1 &
	pid=$!
	for ((w = 0; w < 100; w++)); do
		if grep -qs '^registered' "$WORK/uas-$SERVER-$i.out"; then
			PIDS+=("$pid")
			UAS_PIDS+=("$pid")
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill "$pid" 2>/dev/null || true
	rc=0
	wait "$pid" 2>/dev/null || rc=$?
	log "$SERVER: sipload UAS $i on port $port did not register (exit status $rc): $(tail -3 "$WORK/uas-$SERVER-$i.out")"
	return 1
}

bench_mem() {
	local before after succ
	make_users "$MEM_USERS"
	start_server
	sleep 2
	before=$(mem_kb)
	UACS=()
	sipp_uac "mem-$SERVER" 0 2000 "$MEM_USERS" 4000 $((MEM_USERS / 2000 * 3 + 30)) \
		-sf "$SCEN/register.xml" -inf "$WORK/users.csv" -key domain "$DOMAIN" -key expires 3600 "$SERVER_ADDR"
	wait "${UACS[0]}" || true
	succ=$(stat_field "$WORK/mem-$SERVER.csv" 'SuccessfulCall(C)')
	# A UDP non-INVITE server transaction lives 64*T1 = 32 s after its
	# answer (RFC 3261 §17.2.2, Timer J): wait for them to end.
	sleep "$SETTLE_SECONDS"
	after=$(mem_kb)
	log "$SERVER: memory $before -> $after KiB for $succ bindings"
	R[$SERVER,mem]=-
	((succ > 0)) && R[$SERVER,mem]=$(((after - before) * 1024 / succ))
	R[$SERVER,mem_mib]="$((before / 1024)) -> $((after / 1024))"
	stop_server
}

# --- main -----------------------------------------------------------------------

[[ $LOADGEN == go ]] && go build -o "$WORK/sipload" ./bench/compare/sipload
for s in "${SERVERS[@]}"; do
	case $s in
	switchboard | switchboard-console-off)
		[[ -x $WORK/switchboard ]] && continue
		if [[ ${SWITCHBOARD_BIN:-} ]]; then
			cp "$SWITCHBOARD_BIN" "$WORK/switchboard"
		else
			log "building switchboard"
			go build ${ALLOCS:+-tags pprof} -o "$WORK/switchboard" ./cmd/switchboard
		fi
		go build -o "$WORK/mkusers" ./bench/sip/mkusers
		;;
	kamailio-sqlite | kamailio-htable)
		if ! command -v kamailio >/dev/null || [[ ! -e /usr/lib/x86_64-linux-gnu/kamailio/modules/db_sqlite.so ]] || ! command -v sqlite3 >/dev/null; then
			[[ $(id -u) -eq 0 ]] || die "kamailio missing: apt-get install kamailio kamailio-sqlite-modules sqlite3"
			log "installing kamailio"
			DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends kamailio kamailio-sqlite-modules sqlite3 >/dev/null
		fi
		;;
	*) die "unknown server $s (switchboard, switchboard-console-off, kamailio-sqlite, kamailio-htable)" ;;
	esac
done

for ((round = 1; round <= ${ROUNDS:-1}; round++)); do
	for SERVER in "${SERVERS[@]}"; do
		[[ " $STAGES " == *" reg "* ]] && bench_reg
		[[ " $STAGES " == *" call "* ]] && bench_call
		[[ " $STAGES " == *" mem "* ]] && bench_mem
	done
done

kver=$(kamailio -v 2>/dev/null | head -1 | awk '{print $3}' || true)
mib() { [[ ${1:-0} =~ ^[0-9]+$ ]] && (($1 > 0)) && echo "$((($1 + 512) / 1024)) MiB" || echo -; }
ratio() { # A B: A/B to two decimals, "-" when either is missing
	[[ $1 =~ ^[0-9]+$ && $2 =~ ^[0-9]+$ ]] && (($2 > 0)) && calc "int($1 / $2 * 100 + 0.5) / 100" || echo -
}
echo
echo "SIP side by side, $(date -u +%Y-%m-%d), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(. /etc/os-release && echo "$PRETTY_NAME"), load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
echo "server on core $SERVER_CPU, $GEN_NAME on core $SIPP_CPU ($SIPP_PROCS UAC processes for registrations, $UAS_PROCS UAC+UAS pairs for calls); Kamailio ${kver:-?} with -m $KAM_SHM -x $KAM_MM"
rounds=
[[ ${ROUNDS:-1} -gt 1 && ! ${FIXED_RATE:-} ]] && rounds="; $ROUNDS rounds alternating between the servers, the median round reported"
echo "${TRIAL_SECONDS}s trials, x1.25 until a failure, bisected to ${BISECT_PCT} %${rounds}; pass: < 0.1 % failed, mean response <= ${MAX_MEAN_RT_MS} ms, no socket drops; calls hold ${HOLD_MS} ms"
echo
header="| measure |"
sep="| --- |"
for s in "${SERVERS[@]}"; do
	header+=" $s |"
	sep+=" --- |"
done
has_sb=
[[ " ${SERVERS[*]} " == *" switchboard "* ]] && has_sb=1
if [[ $has_sb ]]; then
	for s in "${SERVERS[@]}"; do
		[[ $s == switchboard ]] && continue
		header+=" switchboard / $s |"
		sep+=" --- |"
	done
fi
echo "$header"
echo "$sep"
row() { # LABEL KEY FORMAT(plain|mib)
	local line="| $1 |" s v
	for s in "${SERVERS[@]}"; do
		v=${R[$s,$2]:--}
		[[ $3 == mib ]] && v=$(mib "$v")
		line+=" $v |"
	done
	if [[ $has_sb ]]; then
		for s in "${SERVERS[@]}"; do
			[[ $s == switchboard ]] && continue
			line+=" $(ratio "${R[switchboard,$2]:--}" "${R[$s,$2]:--}") |"
		done
	fi
	echo "$line"
}
if [[ ${FIXED_RATE:-} ]]; then
	echo "fixed rate ${FIXED_RATE}/s, ${ROUNDS:-1} rounds alternating between the servers (the ratios are of the last round)"
	echo
fi
row "registrations/s (max passing)" reg plain
row "server CPU µs per registration" reg_us plain
[[ ${ROUNDS:-1} -gt 1 ]] && row "  in each round" reg_rounds plain
row "peak memory at that rate" reg_peak mib
row "$GEN_NAME CPU at that rate (% of its core)" reg_gen plain
row "memory per binding at rest (bytes)" mem plain
row "  memory before -> after (MiB)" mem_mib plain
row "calls/s (max passing)" call plain
row "server CPU µs per call" call_us plain
[[ ${ROUNDS:-1} -gt 1 ]] && row "  in each round" call_rounds plain
row "peak memory at that rate" call_peak mib
row "$GEN_NAME CPU at that rate (% of its core)" call_gen plain
