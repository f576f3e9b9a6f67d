#!/usr/bin/env bash
# Async processor overhead: messages per second through
#   embedded queue → tidegate async → gateway → (near) zero-latency simulators → result queue
# against the same request sent straight to the gateway with wrk at the same concurrency.
# Two processor settings: pacing by the gateway's /v1/capacity signal (the default), and by
# the AIMD window alone (--capacity-interval 0), which shows the processor's own ceiling.
#
# usage: bench/async_bench.sh [--messages 20000] [--inflight 128] [--duration 10s] [--out DIR]
#                             [--backends "sqlite redis nats"]
# Each backend runs the capacity-paced and the window-only processor; redis and nats run against
# a redis-server (AOF everysec) and a nats-server -js (file storage) started on loopback.
# Needs wrk (scripts/install-deps.sh --bench) and build/tidegate. Prints a table and writes
# DIR/async_bench.json (default DIR: reports/).
set -euo pipefail
cd "$(dirname "$0")/.."
N=20000; INFLIGHT=128; DURATION=10s; OUT=reports; BACKENDS="sqlite redis nats"
while (($#)); do
  case $1 in
    --messages) N=$2; shift 2;; --inflight) INFLIGHT=$2; shift 2;;
    --duration) DURATION=$2; shift 2;; --out) OUT=$2; shift 2;;
    --backends) BACKENDS=$2; shift 2;;
    -h|--help) sed -n 2,13p "$0"; exit 0;;
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

# $1 = label, $2 = request queue URI, $3 = result queue URI, rest = extra flags; prints msg/s
run_processor() {
  local label=$1 req=$2 res=$3; shift 3
  for i in $(seq 1 "$N"); do echo "$BODY"; done >"$WORK/in.jsonl"
  "$TG" submit --queue "$req" --id-prefix "$label" "$WORK/in.jsonl" >/dev/null 2>"$WORK/$label.submit.log" ||
    { echo "submit to $req failed: $(cat "$WORK/$label.submit.log")" >&2; exit 1; }
  local start end done_n=0
  start=$(date +%s.%N)
  "$TG" async --gateway http://127.0.0.1:$GW --requests "$req" --responses "$res" \
    --metrics-port $MX --max-inflight "$INFLIGHT" \
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

declare -A RESULT
json_rows=()
for b in $BACKENDS; do
  case $b in
    sqlite) req_uri() { echo "sqlite://$WORK/$1.db?queue=requests"; }
            res_uri() { echo "sqlite://$WORK/$1.db?queue=results"; } ;;
    redis)
      command -v redis-server >/dev/null || { echo "skipping redis: no redis-server" >&2; continue; }
      RP=19220; mkdir -p "$WORK/redis"
      redis-server --port $RP --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec \
        --dir "$WORK/redis" >"$WORK/redis.log" 2>&1 &
      pids+=($!)
      for _ in $(seq 100); do redis-cli -p $RP ping >/dev/null 2>&1 && break; sleep 0.1; done
      req_uri() { echo "redis://127.0.0.1:$RP/req-$1?group=tidegate"; }
      res_uri() { echo "redis://127.0.0.1:$RP/res-$1?group=readers"; } ;;
    nats)
      command -v nats-server >/dev/null || { echo "skipping nats: no nats-server" >&2; continue; }
      NP=19221; mkdir -p "$WORK/nats"
      nats-server -js -a 127.0.0.1 -p $NP -sd "$WORK/nats" >"$WORK/nats.log" 2>&1 &
      pids+=($!)
      for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$NP) 2>/dev/null && break; sleep 0.1; done
      req_uri() { echo "nats://127.0.0.1:$NP/REQ_$1?consumer=tidegate"; }
      res_uri() { echo "nats://127.0.0.1:$NP/RES_$1"; } ;;
    *) echo "unknown backend $b (sqlite, redis, nats)" >&2; exit 2;;
  esac
  # (Not atomic across a broker: the processor's result journal, in the work directory.)
  journal=(); [[ $b == sqlite ]] || journal=(--journal "$WORK/$b.journal.db")
  RESULT[$b/capacity]=$(run_processor "${b}cap" "$(req_uri "${b}cap")" "$(res_uri "${b}cap")" \
    "${journal[@]}")
  RESULT[$b/window]=$(run_processor "${b}win" "$(req_uri "${b}win")" "$(res_uri "${b}win")" \
    "${journal[@]}" --capacity-interval 0 --initial-window "$INFLIGHT")
  json_rows+=("{\"backend\": \"$b\", \"capacity_paced_rps\": ${RESULT[$b/capacity]}, \"window_only_rps\": ${RESULT[$b/window]}}")
done

printf '\n%-62s %12s\n' "path ($N messages, $INFLIGHT in flight)" "requests/s"
printf '%-62s %12s\n' "wrk straight to the gateway (sheddable)" "$direct"
for b in $BACKENDS; do
  [[ -n ${RESULT[$b/capacity]:-} ]] || continue
  printf '%-62s %12s\n' "$b → tidegate async (capacity-paced) → gateway → $b" "${RESULT[$b/capacity]}"
  printf '%-62s %12s\n' "$b → tidegate async (window only) → gateway → $b" "${RESULT[$b/window]}"
done
( IFS=,; echo "{\"messages\": $N, \"inflight\": $INFLIGHT, \"direct_rps\": $direct, \"backends\": [${json_rows[*]}]}" ) \
  >"$OUT/async_bench.json"
echo "wrote $OUT/async_bench.json"
