#include "discovery/builtin.h"

namespace tidegate::discovery {

std::vector<BuiltinSource> BuiltinSources() {
  return {
      {"static", MakeStaticSource, "endpoints"},
      {"file", MakeFileSource, "path"},
      {"dns", MakeDnsSource, "name"},
      {"kubernetes", MakeKubernetesSource, "pool"},
  };
}

}  // namespace tidegate::discovery
