#!/usr/bin/env bash
# Simulator throughput: one `tidegate sim` server at a high --time-scale, 256 concurrent streaming
# completions on loopback for a bounded time; reports streamed tokens per second and per
# CPU-second of the sim process (the issue's bar: >= 5,000 streamed tokens/s per core).
#
# usage: bench/sim_bench.sh [--concurrency 256] [--duration 10] [--time-scale 100]
set -euo pipefail
cd "$(dirname "$0")/.."
CONC=256; DUR=10; SCALE=100
while (($#)); do
  case $1 in
    --concurrency) CONC=$2; shift 2;; --duration) DUR=$2; shift 2;; --time-scale) SCALE=$2; shift 2;;
    -h|--help) sed -n 2,6p "$0"; exit 0;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
[[ -x build/tidegate ]] || { echo "build/tidegate missing: run make build" >&2; exit 1; }
LOG=$(mktemp)
build/tidegate sim --port 0 --threads 1 --time-scale "$SCALE" --log-level info 2>"$LOG" &
SIM=$!
trap 'kill $SIM 2>/dev/null || true; wait 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 50); do grep -q "sim listening on" "$LOG" && break; sleep 0.1; done
URL=$(grep -o "http://[0-9.]*:[0-9]*" "$LOG" | head -1)
[[ -n $URL ]] || { echo "sim did not start:"; cat "$LOG"; exit 1; } >&2
echo "sim at $URL (time scale $SCALE), $CONC concurrent streams for ${DUR}s..."
node bench/sim_stream_load.mjs "$URL" "$CONC" "$DUR" "$SIM" 2000
