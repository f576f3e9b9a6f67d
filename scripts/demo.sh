#!/usr/bin/env bash
# The demo (`make demo` runs this after building): `tidegate demo` starts four simulated vLLM
# servers (Llama-3.1-8B on one H100 each), the gateway on http://127.0.0.1:8080 and the async
# processor on an embedded queue (./tidegate-demo/tidegate.db), prints how to use them and shows
# live progress. Ctrl-C stops everything. Arguments are passed on: scripts/demo.sh --help lists
# them (e.g. --time-scale 10, --port 0, --duration 60s, --scenario seed --report DIR).
#
# Environment: TIDEGATE (the binary, default build/tidegate).
set -euo pipefail
cd "$(dirname "$0")/.."
TIDEGATE=${TIDEGATE:-build/tidegate}

if [[ ! -x $TIDEGATE ]]; then
  echo "demo: $TIDEGATE is missing; build it first (make demo does)" >&2
  exit 1
fi
exec "$TIDEGATE" demo "$@"
