#include "discovery/builtin.h"

namespace tidegate::discovery {

std::vector<BuiltinSource> BuiltinSources() {
  return {
      {"static", MakeStaticSource, "endpoints"},
      {"file", MakeFileSource, "path"},
      {"dns", MakeDnsSource, "name"},
  };
}

}  // namespace tidegate::discovery
