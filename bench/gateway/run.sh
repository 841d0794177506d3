#!/usr/bin/env bash
# WebRTC gateway benchmark on loopback: builds the switch and the load
# generator, runs the steps and prints a Markdown table.
#
#   bench/gateway/run.sh                       # N = 10,25,50, 10 s windows
#   NS=10,25,50,100 DUR=15s bench/gateway/run.sh
#   RELAY=always bench/gateway/run.sh          # RTP through the switch's media relay too
#
# The switch runs pinned to CPU $SWITCH_CPU and the generator (pion peers
# and the SIP UAS) to CPU $GEN_CPU, when taskset exists.
set -euo pipefail

NS=${NS:-10,25,50}
DUR=${DUR:-10s}
WARM=${WARM:-2s}
RELAY=${RELAY:-never}
SWITCH_CPU=${SWITCH_CPU:-0}
GEN_CPU=${GEN_CPU:-1}

cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/switchboard" ./cmd/switchboard
go build -o "$tmp/gwbench" ./bench/gateway

pin=()
if command -v taskset >/dev/null && [ "$(nproc)" -gt 1 ]; then
	pin=(taskset -c "$GEN_CPU")
else
	SWITCH_CPU=-1
fi
"${pin[@]}" "$tmp/gwbench" -bin "$tmp/switchboard" -n "$NS" -dur "$DUR" -warm "$WARM" \
	-relay "$RELAY" -switch-cpu "$SWITCH_CPU"
