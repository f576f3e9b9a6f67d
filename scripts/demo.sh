#!/usr/bin/env bash
# The all-in-one demo (for now): two local OpenAI-compatible model servers and the tidegate
# gateway in front of them on http://127.0.0.1:8080. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-8080}
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

for p in 8001 8002; do
  node tests/fake_upstream.mjs --port "$p" --name "server-$p" --models demo-model >/dev/null &
  pids+=($!)
done
sleep 0.5
build/tidegate serve --host 127.0.0.1 --port "$PORT" --endpoints 127.0.0.1:8001,127.0.0.1:8002 &
pids+=($!)
sleep 0.5
cat <<MSG

  tidegate is running: OpenAI base URL http://127.0.0.1:$PORT/v1
  (two local model servers on :8001 and :8002 behind it)

  try:
    curl -s http://127.0.0.1:$PORT/v1/chat/completions -H 'content-type: application/json' \\
      -d '{"model":"demo-model","messages":[{"role":"user","content":"hi"}]}'
    curl -sN http://127.0.0.1:$PORT/v1/chat/completions -H 'content-type: application/json' \\
      -d '{"model":"demo-model","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    curl -s http://127.0.0.1:$PORT/metrics | grep tidegate_requests_total

  Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
