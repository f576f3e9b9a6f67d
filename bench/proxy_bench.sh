#!/usr/bin/env bash
# Data-plane benchmark: the same fast upstream (nginx returning canned OpenAI responses on two
# ports) measured direct, through tidegate, through HAProxy (balance leastconn) and through
# nginx (proxy, keep-alive upstream), with wrk on loopback. Two workloads: a small non-streaming
# chat completion (JSON, Content-Length) and a small streaming one (SSE, chunked).
#
# usage: bench/proxy_bench.sh [--duration 10s] [--connections "32 64"] [--threads 2] [--out DIR]
#                             [--dashboard]
# --dashboard adds the target tidegate-dash: the same gateway with its /dashboard open in a
# headless Chromium for the whole run (the page polls /dashboard/data every second), to compare
# with tidegate side by side.
# Each peer is set up as its own documentation recommends for streaming LLM traffic: HAProxy
# with `option http-no-delay` (no holding of small writes), nginx with `proxy_buffering off`.
# The summary gives tidegate's requests/s and p99 against HAProxy's at each level.
# Needs: nginx, haproxy, wrk (scripts/install-deps.sh --bench) and build/tidegate.
# Prints a table and writes DIR/proxy_bench.json (default DIR: reports/).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=10s; CONNS="32 64"; PROXY_THREADS=2; OUT=reports; DASH=0
while (($#)); do
  case $1 in
    --duration) DURATION=$2; shift 2;; --connections) CONNS=$2; shift 2;;
    --threads) PROXY_THREADS=$2; shift 2;; --out) OUT=$2; shift 2;;
    --dashboard) DASH=1; shift;;
    -h|--help) sed -n 2,16p "$0"; exit 0;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
for t in nginx haproxy wrk; do command -v $t >/dev/null || { echo "missing $t: run scripts/install-deps.sh --bench" >&2; exit 1; }; done
[[ -x build/tidegate ]] || { echo "build/tidegate missing: run make build" >&2; exit 1; }

WORK=$(mktemp -d /tmp/tidegate-bench.XXXXXX)
mkdir -p "$OUT"
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  [[ -f $WORK/up.pid ]] && kill "$(cat $WORK/up.pid)" 2>/dev/null || true
  [[ -f $WORK/px.pid ]] && kill "$(cat $WORK/px.pid)" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

UP1=19101; UP2=19102; TG=19110; HA=19111; NG=19112; TGLR=19113; TGD=19114; TGDA=19115

# A canned non-streaming chat completion and a canned 16-event SSE stream.
JSON='{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"The quick brown fox jumps over the lazy dog."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":10,"total_tokens":22}}'
SSE=""
for i in $(seq 1 16); do
  SSE+="data: {\\\"id\\\":\\\"c\\\",\\\"object\\\":\\\"chat.completion.chunk\\\",\\\"model\\\":\\\"m\\\",\\\"choices\\\":[{\\\"index\\\":0,\\\"delta\\\":{\\\"content\\\":\\\"tok$i \\\"}}]}\\n\\n"
done
SSE+="data: [DONE]\\n\\n"
JSON_ESC=${JSON//\"/\\\"}

cat > $WORK/upstream.conf <<NGX
worker_processes 1;
pid $WORK/up.pid;
error_log $WORK/up-error.log;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$UP1; listen 127.0.0.1:$UP2;
    location = /health { return 200 '{}'; }
    # vLLM-style metrics, so tidegate's scheduler works on live (if constant) pool state.
    location = /metrics {
      default_type text/plain;
      return 200 "vllm:num_requests_waiting{model_name=\\"m\\"} 0\nvllm:num_requests_running{model_name=\\"m\\"} 3\nvllm:kv_cache_usage_perc{model_name=\\"m\\"} 0.2\n";
    }
    location = /v1/models { default_type application/json; return 200 '{"object":"list","data":[{"id":"m","object":"model"}]}'; }
    location = /v1/chat/completions { default_type application/json; return 200 "$JSON_ESC"; }
    # Streaming: sub_filter forces chunked transfer encoding, like a real SSE stream.
    location = /v1/completions {
      default_type text/event-stream;
      sub_filter_types text/event-stream; sub_filter_once off; sub_filter 'zz' 'zz';
      return 200 "$SSE";
    }
  }
}
NGX
nginx -c $WORK/upstream.conf

cat > $WORK/haproxy.cfg <<HA
global
  nbthread $PROXY_THREADS
  maxconn 4000
defaults
  mode http
  option http-no-delay
  timeout connect 3s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:$HA
  default_backend be
backend be
  balance leastconn
  server s1 127.0.0.1:$UP1
  server s2 127.0.0.1:$UP2
HA
haproxy -f $WORK/haproxy.cfg &
pids+=($!)

cat > $WORK/proxy.conf <<NGX
worker_processes $PROXY_THREADS;
pid $WORK/px.pid;
error_log $WORK/px-error.log;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $WORK;
  keepalive_requests 1000000;
  upstream pool { least_conn; server 127.0.0.1:$UP1; server 127.0.0.1:$UP2; keepalive 128; }
  server {
    listen 127.0.0.1:$NG;
    location / {
      proxy_pass http://pool;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
NGX
nginx -c $WORK/proxy.conf

# tidegate with its default, metric-aware policy, and with plain least-request for comparison.
# (--admin-address public: /v1/pool is read on the gateway's port below; two gateways cannot
# share the default admin port.)
build/tidegate serve --host 127.0.0.1 --port $TG --threads $PROXY_THREADS --admin-address public \
  --endpoints 127.0.0.1:$UP1,127.0.0.1:$UP2 --log-level warn &
pids+=($!)
build/tidegate serve --host 127.0.0.1 --port $TGLR --threads $PROXY_THREADS --policy least-request \
  --admin-address public --endpoints 127.0.0.1:$UP1,127.0.0.1:$UP2 --log-level warn &
pids+=($!)
if ((DASH)); then
  build/tidegate serve --host 127.0.0.1 --port $TGD --threads $PROXY_THREADS \
    --admin-address 127.0.0.1:$TGDA --endpoints 127.0.0.1:$UP1,127.0.0.1:$UP2 --log-level warn &
  pids+=($!)
  sleep 1
  chromium --headless=new --no-sandbox --disable-gpu --user-data-dir=$WORK/chromium \
    http://127.0.0.1:$TGDA/dashboard >$WORK/chromium.log 2>&1 &
  pids+=($!)
fi
sleep 1
curl -s http://127.0.0.1:$TG/v1/pool | grep -q '"stale":false' \
  || echo "warning: tidegate does not see fresh endpoint metrics" >&2

BODY='{"model":"m","messages":[{"role":"user","content":"Say something about foxes."}],"max_tokens":16}'
SBODY='{"model":"m","prompt":"Say something about foxes.","max_tokens":16,"stream":true}'
lua() {  # $1 = body
  cat > $WORK/post.lua <<LUA
wrk.method = "POST"
wrk.body = '$1'
wrk.headers["Content-Type"] = "application/json"
LUA
}

declare -A TARGETS=([direct]=$UP1 [tidegate]=$TG [tidegate-lr]=$TGLR [haproxy]=$HA [nginx]=$NG
                   [tidegate-dash]=$TGD)
ORDER=(direct tidegate tidegate-lr haproxy nginx)
((DASH)) && ORDER=(direct tidegate tidegate-dash tidegate-lr haproxy nginx)
results=()
printf "\n%-10s %-11s %5s %12s %10s %10s\n" workload target conns "req/s" "p50(ms)" "p99(ms)"
# Two load levels: saturated (--connections, throughput) and one connection (added latency,
# measured without queueing on this 2-core machine).
runs=()
for c in $CONNS; do runs+=("json $c" "sse $c"); done
runs+=("json 1" "sse 1")
declare -A RPS P99
for run in "${runs[@]}"; do
  read -r workload c <<<"$run"
  if [[ $workload == json ]]; then lua "$BODY"; path=/v1/chat/completions; else lua "$SBODY"; path=/v1/completions; fi
  for name in "${ORDER[@]}"; do
    port=${TARGETS[$name]}
    # warm-up, then the measured run
    wrk -t1 -c$c -d2s -s $WORK/post.lua http://127.0.0.1:$port$path >/dev/null 2>&1 || true
    out=$(wrk -t1 -c$c -d$DURATION --latency -s $WORK/post.lua http://127.0.0.1:$port$path)
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
    tomsec() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/,"",v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v); print v+0 } else if (v ~ /s$/) { sub(/s$/,"",v); print v*1000 } else print v }'; }
    p50ms=$(tomsec "$p50"); p99ms=$(tomsec "$p99")
    printf "%-10s %-11s %5s %12s %10s %10s %s\n" $workload $name $c "$rps" "$p50ms" "$p99ms" "$errs"
    RPS[$workload/$c/$name]=$rps; P99[$workload/$c/$name]=$p99ms
    results+=("{\"workload\":\"$workload\",\"connections\":$c,\"target\":\"$name\",\"rps\":$rps,\"p50_ms\":$p50ms,\"p99_ms\":$p99ms,\"errors\":\"${errs}\"}")
  done
done
echo
echo "tidegate (default policy) against HAProxy leastconn, same upstreams:"
printf "%-10s %5s %14s %22s\n" workload conns "req/s ratio" "p99 ms (tg / haproxy)"
for run in "${runs[@]}"; do
  read -r workload c <<<"$run"
  t=${RPS[$workload/$c/tidegate]}; h=${RPS[$workload/$c/haproxy]}
  awk -v w=$workload -v c=$c -v t=$t -v h=$h -v tp=${P99[$workload/$c/tidegate]} -v hp=${P99[$workload/$c/haproxy]} \
    'BEGIN { printf "%-10s %5s %13.3fx %10s / %-10s\n", w, c, (h > 0 ? t / h : 0), tp, hp }'
done
if ((DASH)); then
  chromium_state="still open"; pgrep -f "user-data-dir=$WORK/chromium" >/dev/null || chromium_state="EXITED EARLY: see no dashboard cost"
  echo
  echo "tidegate with /dashboard open in Chromium (Chromium $chromium_state) against tidegate:"
  printf "%-10s %5s %14s %22s\n" workload conns "req/s ratio" "p99 ms (dash / plain)"
  for run in "${runs[@]}"; do
    read -r workload c <<<"$run"
    awk -v w=$workload -v c=$c -v t=${RPS[$workload/$c/tidegate-dash]} -v h=${RPS[$workload/$c/tidegate]} \
      -v tp=${P99[$workload/$c/tidegate-dash]} -v hp=${P99[$workload/$c/tidegate]} \
      'BEGIN { printf "%-10s %5s %13.3fx %10s / %-10s\n", w, c, (h > 0 ? t / h : 0), tp, hp }'
  done
fi
( IFS=,; echo "{\"duration\":\"$DURATION\",\"connections\":\"$CONNS\",\"proxy_threads\":$PROXY_THREADS,\"results\":[${results[*]}]}" ) > "$OUT/proxy_bench.json"
echo
echo "wrote $OUT/proxy_bench.json"
