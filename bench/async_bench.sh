#!/usr/bin/env bash
# Async processor overhead: messages per second through
#   embedded queue → tidegate async → gateway → (near) zero-latency simulators → result queue
# against the same request sent straight to the gateway with wrk at the same concurrency.
# Two processor settings: pacing by the gateway's /v1/capacity signal (the default), and by
# the AIMD window alone (--capacity-interval 0), which shows the processor's own ceiling.
#
# usage: bench/async_bench.sh [--messages 20000] [--inflight 128] [--duration 10s] [--out DIR]
# Needs wrk (scripts/install-deps.sh --bench) and build/tidegate. Prints a table and writes
# DIR/async_bench.json (default DIR: reports/).
set -euo pipefail
cd "$(dirname "$0")/.."
N=20000; INFLIGHT=128; DURATION=10s; OUT=reports
while (($#)); do
  case $1 in
    --messages) N=$2; shift 2;; --inflight) INFLIGHT=$2; shift 2;;
    --duration) DURATION=$2; shift 2;; --out) OUT=$2; shift 2;;
    -h|--help) sed -n 2,10p "$0"; exit 0;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
command -v wrk >/dev/null || { echo "missing wrk: run scripts/install-deps.sh --bench" >&2; exit 1; }
[[ -x build/tidegate ]] || { echo "build/tidegate missing: run make build" >&2; exit 1; }
TG=$PWD/build/tidegate
WORK=$(mktemp -d /tmp/tidegate-async-bench.XXXXXX)
mkdir -p "$OUT"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

SIM=19201; GW=19210; MX=19211
MODEL=meta-llama/Llama-3.1-8B-Instruct
# One output token, simulated time 100000x faster than real: the servers answer at once.
"$TG" sim --port $SIM --port-count 2 --time-scale 100000 --log-level warn >"$WORK/sim.log" 2>&1 &
pids+=($!)
"$TG" serve --port $GW --endpoints 127.0.0.1:$SIM,127.0.0.1:$((SIM + 1)) --log-level warn \
  >"$WORK/gw.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf http://127.0.0.1:$GW/readyz >/dev/null && break; sleep 0.1; done

BODY="{\"model\":\"$MODEL\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"

# Straight to the gateway, as sheddable traffic, at the same concurrency.
cat >"$WORK/post.lua" <<EOF
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["content-type"] = "application/json"
wrk.headers["x-gateway-inference-objective"] = "sheddable"
EOF
direct=$(wrk -t 2 -c "$INFLIGHT" -d "$DURATION" -s "$WORK/post.lua" "http://127.0.0.1:$GW/v1/chat/completions" |
  awk '/Requests\/sec/ {print $2}')

run_processor() {  # $1 = label, rest = extra flags; prints messages/s
  local label=$1; shift
  local db="$WORK/$label.db"
  for i in $(seq 1 "$N"); do echo "$BODY"; done >"$WORK/in.jsonl"
  "$TG" submit --queue "sqlite://$db?queue=requests" --id-prefix "$label" "$WORK/in.jsonl" >/dev/null 2>&1
  local start end done_n=0
  start=$(date +%s.%N)
  "$TG" async --gateway http://127.0.0.1:$GW --requests "sqlite://$db?queue=requests" \
    --responses "sqlite://$db?queue=results" --metrics-port $MX --max-inflight "$INFLIGHT" \
    --max-held $((INFLIGHT * 8)) --pull-batch 1000 --log-level warn "$@" >"$WORK/$label.log" 2>&1 &
  local pid=$!
  pids+=($pid)
  while ((done_n < N)); do
    sleep 0.05
    done_n=$(curl -sf http://127.0.0.1:$MX/metrics 2>/dev/null |
      awk '/^tidegate_async_requests_succeeded_total/ {print int($2)}' || echo 0)
    done_n=${done_n:-0}
    kill -0 $pid 2>/dev/null || { echo "processor died: $(cat "$WORK/$label.log")" >&2; exit 1; }
  done
  end=$(date +%s.%N)
  kill -TERM $pid; wait $pid 2>/dev/null || true
  awk -v n="$N" -v s="$start" -v e="$end" 'BEGIN {printf "%.0f", n / (e - s)}'
}
capacity=$(run_processor capacity)
window=$(run_processor window --capacity-interval 0 --initial-window "$INFLIGHT")

printf '\n%-58s %12s\n' "path ($N messages, $INFLIGHT in flight)" "requests/s"
printf '%-58s %12s\n' "wrk straight to the gateway (sheddable)" "$direct"
printf '%-58s %12s\n' "queue → tidegate async (capacity-paced) → gateway → queue" "$capacity"
printf '%-58s %12s\n' "queue → tidegate async (window only) → gateway → queue" "$window"
cat >"$OUT/async_bench.json" <<EOF
{"messages": $N, "inflight": $INFLIGHT, "direct_rps": $direct,
 "processor_capacity_paced_rps": $capacity, "processor_window_only_rps": $window}
EOF
echo "wrote $OUT/async_bench.json"
