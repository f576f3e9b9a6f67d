// discovery/builtin.h — the sources that ship with tidegate, for the registry.
//
// Contract: BuiltinSources() lists every built-in source with its factory and main parameter;
// discovery/registry.cc registers them on first use. Adding a source = one entry here plus its
// own .cc file in this directory.
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <vector>

#include "discovery/source.h"

namespace tidegate::discovery {

struct BuiltinSource {
  std::string type;
  SourceFactory factory;
  std::string main_key;
};
std::vector<BuiltinSource> BuiltinSources();

// Factories of the built-in sources (each in its own file).
std::unique_ptr<Source> MakeStaticSource(const SourceSpec& spec, std::string* error);
std::unique_ptr<Source> MakeFileSource(const SourceSpec& spec, std::string* error);
std::unique_ptr<Source> MakeDnsSource(const SourceSpec& spec, std::string* error);
std::unique_ptr<Source> MakeKubernetesSource(const SourceSpec& spec, std::string* error);

}  // namespace tidegate::discovery
