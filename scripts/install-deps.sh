#!/usr/bin/env bash
# Installs the Debian 12 packages tidegate needs to build and test, skipping what is present.
# Runs as root (or via sudo when available). Safe to run repeatedly.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config
  libboost1.81-dev libsimdjson-dev nlohmann-json3-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
  libsqlite3-dev sqlite3 libcurl4-openssl-dev libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libnats-dev  # NATS JetStream queues (cnats)
  libpcre2-dev  # the tokenizer's pre-tokenisation regexes (Unicode properties, JIT)
  libzmq3-dev cppzmq-dev  # KV-cache events (ZeroMQ PUB/SUB); msgpack-cxx: see below
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc  # the ext_proc picker
  redis-server nats-server  # the real brokers the queue tests run against (loopback)
  nodejs npm
  prometheus
  chromium  # headless, for tests/integration/report_html.test.mjs
  haproxy   # the benchmark's baseline, tested by tests/integration/bench_haproxy.test.mjs
  openssl curl util-linux  # tls.test.mjs makes certificates and calls curl; limits uses prlimit
  dnsmasq-base  # a real DNS server on loopback for the dns discovery test
  python3-yaml  # deploy_render.test.mjs reads the rendered manifests with it
)
if [[ "${1:-}" == "--bench" ]]; then PKGS+=(nginx wrk); fi
# kubectl (kustomize rendering of deploy/kubernetes; kubectl get --watch against the API test
# double): Debian's kubernetes-client, unless some kubectl is already on PATH.
command -v kubectl >/dev/null || PKGS+=(kubernetes-client)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm may come from outside Debian (e.g. a preinstalled toolchain): accept them if on PATH.
if command -v node >/dev/null && command -v npm >/dev/null; then
  tmp=(); for p in "${missing[@]}"; do [[ "$p" == nodejs || "$p" == npm ]] || tmp+=("$p"); done
  missing=("${tmp[@]+"${tmp[@]}"}")
fi
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# msgpack-cxx (the KV events' codec) is header-only and used without Boost (MSGPACK_NO_BOOST), but
# Debian's libmsgpack-cxx-dev declares a dependency on libboost-dev (1.74), and installing it makes
# apt remove the libboost1.81-dev this build needs. So its package is fetched and unpacked into
# .deps/ (not installed); CMake looks for msgpack.hpp there.
MSGPACK_DIR="$(cd "$(dirname "$0")/.." && pwd)/.deps/msgpack-cxx"
if [[ ! -f "$MSGPACK_DIR/usr/include/msgpack.hpp" ]]; then
  echo "install-deps: unpacking libmsgpack-cxx-dev into $MSGPACK_DIR"
  tmpd=$(mktemp -d)
  (cd "$tmpd" && apt-get download -qq libmsgpack-cxx-dev >/dev/null 2>&1 ||
     { SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"; $SUDO apt-get update -qq &&
       apt-get download -qq libmsgpack-cxx-dev >/dev/null; })
  mkdir -p "$MSGPACK_DIR"
  dpkg -x "$tmpd"/libmsgpack-cxx-dev_*.deb "$MSGPACK_DIR"
  rm -rf "$tmpd"
fi
