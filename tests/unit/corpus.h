// tests/unit/corpus.h — the fuzz corpora, read for the replay tests: one loop for every
// fuzz/corpus/NAME directory (found from this file's path, so ctest may run from anywhere).
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

namespace tidegate::testing {

inline std::filesystem::path CorpusDir(const std::string& name) {
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "fuzz" /
         "corpus" / name;
}

inline std::string ReadCorpusFile(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Calls fn(path, bytes) for every file of fuzz/corpus/NAME; returns how many there were (a
// missing directory is a test failure).
inline int ForEachCorpusFile(
    const std::string& name,
    const std::function<void(const std::filesystem::path&, const std::string&)>& fn) {
  const auto dir = CorpusDir(name);
  EXPECT_TRUE(std::filesystem::is_directory(dir)) << dir;
  if (!std::filesystem::is_directory(dir)) return 0;
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    ++files;
    fn(entry.path(), ReadCorpusFile(entry.path()));
  }
  return files;
}

}  // namespace tidegate::testing
