#!/usr/bin/env bash
# The demo: four simulated vLLM servers (Llama-3.1-8B on one H100 each, `tidegate sim`, one
# process) on 127.0.0.1:8001-8004 and the tidegate gateway in front of them on
# http://127.0.0.1:8080. Ctrl-C stops everything.
#
# Environment: PORT (gateway, default 8080), SIM_PORT (first simulator port, default 8001),
# SIMS (number of simulated servers, default 4), TIME_SCALE (simulated time runs this many times
# faster than wall time, default 10), TIDEGATE (the binary, default build/tidegate).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-8080}
SIM_PORT=${SIM_PORT:-8001}
SIMS=${SIMS:-4}
TIME_SCALE=${TIME_SCALE:-10}
TIDEGATE=${TIDEGATE:-build/tidegate}
MODEL=meta-llama/Llama-3.1-8B-Instruct

if [[ ! -x $TIDEGATE ]]; then
  echo "demo: $TIDEGATE is missing; build it first (make demo does)" >&2
  exit 1
fi

pids=()
# Waits up to $1 tenths of a second for every started process to exit; fails if some are left.
wait_gone() {
  for _ in $(seq "$1"); do
    local alive=0 p
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    ((alive)) || return 0
    sleep 0.1
  done
  return 1
}
cleanup() {
  trap - EXIT INT TERM
  ((${#pids[@]})) || return 0
  # A Ctrl-C in the terminal reached the whole process group: let them stop on their own first.
  wait_gone "${1:-0}" || { kill -TERM "${pids[@]}" 2>/dev/null || true; wait_gone 50; } ||
    kill -KILL "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'echo; echo "demo: stopping"; cleanup 5; exit 130' INT
trap 'echo "demo: stopping"; cleanup; exit 143' TERM

# True if GET http://127.0.0.1:$1$2 answers 200 (plain bash: curl may not be installed).
http_ok() {
  (
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
    IFS= read -r -t 2 status <&3 || exit 1
    [[ $status == "HTTP/1."?" 200 "* ]]
  ) 2>/dev/null
}
# Waits until http://127.0.0.1:$1$2 answers 200 (up to 10 s) while process $3 is alive.
wait_http() {
  for _ in $(seq 100); do
    if http_ok "$1" "$2"; then return 0; fi
    kill -0 "$3" 2>/dev/null || { echo "demo: process $3 exited; see its output above" >&2; return 1; }
    sleep 0.1
  done
  echo "demo: nothing answered on http://127.0.0.1:$1$2 after 10 s" >&2
  return 1
}

endpoints=()
for ((i = 0; i < SIMS; i++)); do endpoints+=("127.0.0.1:$((SIM_PORT + i))"); done
endpoints_csv=$(IFS=,; echo "${endpoints[*]}")
last_sim_port=$((SIM_PORT + SIMS - 1))

"$TIDEGATE" sim --host 127.0.0.1 --port "$SIM_PORT" --port-count "$SIMS" \
  --time-scale "$TIME_SCALE" --log-level warn &
pids+=($!)
sim_pid=$!
for e in "${endpoints[@]}"; do wait_http "${e##*:}" /health "$sim_pid"; done

"$TIDEGATE" serve --host 127.0.0.1 --port "$PORT" --endpoints "$endpoints_csv" --log-level warn &
pids+=($!)
wait_http "$PORT" /readyz "$!"

cat <<MSG

  tidegate is running.

  OpenAI base URL:  http://127.0.0.1:$PORT/v1        (any API key; model "$MODEL")
  behind it:        $SIMS simulated vLLM servers (Llama-3.1-8B on one H100 each, $TIME_SCALE× faster
                    than real time) on 127.0.0.1:$SIM_PORT-$last_sim_port

  try:
    curl -s http://127.0.0.1:$PORT/v1/chat/completions -H 'content-type: application/json' \\
      -d '{"model":"$MODEL","max_tokens":32,"messages":[{"role":"user","content":"hi"}]}'
    curl -sN http://127.0.0.1:$PORT/v1/chat/completions -H 'content-type: application/json' \\
      -d '{"model":"$MODEL","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}'
    curl -s http://127.0.0.1:$PORT/v1/models
    curl -s http://127.0.0.1:$PORT/v1/pool        # live state of every server, as the gateway sees it
    curl -s http://127.0.0.1:$PORT/v1/capacity    # how many more sheddable requests fit now

  metrics:
    curl -s http://127.0.0.1:$PORT/metrics | grep -E '^tidegate_(requests_total|requests_in_flight|endpoint)'
                                                   # the gateway (Prometheus text format)
    curl -s http://127.0.0.1:$SIM_PORT/metrics | grep -E '^vllm:(num_requests|kv_cache|prefix_cache)'
                                                   # one model server (vLLM's metric names)
  Ctrl-C stops everything.

MSG
# Runs until Ctrl-C, or until one of the processes exits on its own (then the rest are stopped).
set +e
wait -n "${pids[@]}"
rc=$?
echo "demo: a process exited (status $rc); stopping the rest" >&2
exit "$rc"
