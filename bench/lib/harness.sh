# Shared by bench/sip/run.sh and bench/compare/run.sh (sourced, not run):
# logging, the cleanup of every process started (by PID, only while it is
# still a child of the script), the socket-buffer limits raised for the run
# and restored, and the /proc and SIPp statistics readers.
#
# harness_init PREFIX LOAD_MAX: makes WORK (/tmp/PREFIX.XXXXXX), sets the
# EXIT/INT/TERM traps, raises net.core.{r,w}mem_max to 8 MiB as root (SIPp
# and the servers ask for up to that with -buff_size / SO_RCVBUF), and warns
# when the load average is above LOAD_MAX. The script adds each process it
# starts to PIDS; KEEP=1 keeps WORK.

# calc EXPR: floating-point arithmetic with awk (no bc needed).
calc() { awk "BEGIN {print $*}"; }

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

PIDS=()
SYSCTL_RESTORE=()

# ours PID: whether PID is still a child of this script (not a reused PID).
ours() { [[ -r /proc/$1/stat && $(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f2) == "$$" ]]; }

cleanup() {
	local p kv
	for p in "${PIDS[@]}"; do ours "$p" && kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do ours "$p" || break; sleep 0.1; done
		ours "$p" && kill -9 "$p" 2>/dev/null
	done
	for kv in "${SYSCTL_RESTORE[@]}"; do sysctl -q -w "$kv" >/dev/null || true; done
	if [[ ${KEEP:-} ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}

# stop_server: stops the server the script started (SERVER_PID), by PID and
# only while it is the script's child; SIGKILL after 10 s.
stop_server() {
	kill "$SERVER_PID" 2>/dev/null || true
	for _ in $(seq 100); do ours "$SERVER_PID" || break; sleep 0.1; done
	ours "$SERVER_PID" && kill -9 "$SERVER_PID" 2>/dev/null
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=
}

harness_init() {
	local prefix=$1 load_max=$2 k old load1
	WORK=$(mktemp -d "/tmp/$prefix.XXXXXX")
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	if [[ $(id -u) -eq 0 ]]; then
		for k in net.core.rmem_max net.core.wmem_max; do
			old=$(sysctl -n "$k")
			if ((old < 8388608)); then
				SYSCTL_RESTORE+=("$k=$old")
				sysctl -q -w "$k=8388608"
			fi
		done
	else
		log "not root: socket buffer limits left as they are ($(sysctl -n net.core.rmem_max))"
	fi
	# Anything else running spoils the figures: say so.
	read -r load1 _ </proc/loadavg
	if (($(calc "($load1 > $load_max) ? 1 : 0"))); then
		log "warning: load average is $load1; other processes will skew the figures"
	fi
}

CLK_TCK=$(getconf CLK_TCK)

# cpu_ticks PID...: user+system clock ticks used so far by the processes.
cpu_ticks() {
	local total=0 p f
	for p in "$@"; do
		[[ -r /proc/$p/stat ]] || continue
		# Fields after the ")" of comm: utime is the 12th, stime the 13th.
		f=$(sed 's/.*) //' "/proc/$p/stat")
		read -r -a a <<<"$f"
		total=$((total + a[11] + a[12]))
	done
	echo "$total"
}

# rcvbuf_errors: the machine's UDP receive-buffer drops (all sockets).
rcvbuf_errors() { awk '/^Udp: [0-9]/ {print $6}' /proc/net/snmp; }

# sock_drops PORT: datagrams dropped by the UDP sockets bound to
# 127.0.0.1:PORT (the "drops" column of /proc/net/udp).
sock_drops() {
	awk -v a="$(printf '0100007F:%04X' "$1")" '$2 == a {n += $13} END {print n + 0}' /proc/net/udp
}

# free_port: a port free on loopback for both UDP and TCP.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000))
		if ! ss -Hlun "sport = :$p" | grep -q . && ! ss -Hltn "sport = :$p" | grep -q .; then
			echo "$p"
			return
		fi
	done
}

# wait_udp PORT: wait until something listens on 127.0.0.1:PORT/udp.
wait_udp() {
	local i
	for i in $(seq 200); do
		ss -Hlun "sport = :$1" | grep -q . && return 0
		sleep 0.05
	done
	return 1
}

# stat_field FILE COLUMN: a column of the last row of a SIPp -trace_stat file.
stat_field() {
	awk -F';' -v col="$2" 'NR==1 {for (i=1;i<=NF;i++) if ($i==col) c=i; next} {v=$c} END {print (v==""?0:v)}' "$1"
}

# created_after FILE M: seconds SIPp took to start its M calls (from the
# per-second rows of its -trace_stat file), 999 if it never did.
created_after() {
	awk -F';' -v m="$2" '
		NR == 1 {for (i = 1; i <= NF; i++) {if ($i == "OutgoingCall(C)") o = i; if ($i == "ElapsedTime(C)") e = i}; next}
		$o >= m {split($e, t, ":"); print t[1] * 3600 + t[2] * 60 + t[3]; found = 1; exit}
		END {if (!found) print 999}' "$1"
}
