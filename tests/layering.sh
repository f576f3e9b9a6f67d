#!/usr/bin/env bash
# The module layering, checked: every `#include "X/..."` in src/<m>/ must name <m> itself or one
# of the modules <m> links (the table CMakeLists.txt builds: "m:dep1,dep2" words), and only the
# modules allowed to include Boost.Beast do, and only extproc includes gRPC (its generated
# protobuf headers, under envoy/, are included with <> like any library's).
#   usage: tests/layering.sh SRC_DIR m1:d1,d2 m2: ...
set -euo pipefail
src=$1; shift
declare -A deps
for entry in "$@"; do
  [[ -z $entry ]] && continue
  deps[${entry%%:*}]=",${entry#*:},"
done
beast_ok=",http,gateway,sim,"
fail=0
for dir in "$src"/*/; do
  m=$(basename "$dir")
  if [[ -z ${deps[$m]+x} ]]; then
    echo "layering: src/$m is not a module in CMakeLists.txt (tidegate_module($m ...))"; fail=1; continue
  fi
  while IFS=: read -r file line text; do
    inc=$(sed -E 's/.*#include "([a-z_]+)\/.*/\1/' <<<"$text")
    [[ $inc == "$m" ]] && continue
    if [[ ${deps[$m]} != *",$inc,"* ]]; then
      echo "layering: ${file#$src/}:$line includes $inc/, which module $m does not link (deps:${deps[$m]//,/ })"
      fail=1
    fi
  done < <(grep -Hn -E '^#include "[a-z_]+/' "$dir"*.h "$dir"*.cc 2>/dev/null || true)
  if [[ $beast_ok != *",$m,"* ]] && grep -ln 'boost/beast' "$dir"*.h "$dir"*.cc >/dev/null 2>&1; then
    for f in $(grep -l 'boost/beast' "$dir"*.h "$dir"*.cc); do
      echo "layering: ${f#$src/} includes Boost.Beast; only http, gateway and sim may"
    done
    fail=1
  fi
done
for f in $(grep -l -E '#include <grpc(pp)?/|\.grpc\.pb\.h>|#include <envoy/' "$src"/*/*.h "$src"/*/*.cc 2>/dev/null || true); do
  m=$(basename "$(dirname "$f")")
  if [[ $m != extproc ]]; then
    echo "layering: ${f#$src/} includes gRPC or the ext_proc protos; only extproc may"
    fail=1
  fi
done
if ((fail)); then exit 1; fi
echo "layering: ${#deps[@]} modules, every include within its module's dependencies"
