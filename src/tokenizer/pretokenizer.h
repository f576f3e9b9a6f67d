// tokenizer/pretokenizer.h — the pre-tokenisation of a Hugging Face tokenizer.json, with PCRE2.
//
// Contract: a Pretokenizer is built from the JSON of `pre_tokenizer` (Build() returns nullptr
// and an error naming the unsupported part otherwise). Supported: `Split` with a `Regex` or
// `String` pattern, every `behavior` (Isolated, Removed, MergedWithPrevious, MergedWithNext,
// Contiguous) and `invert`; `ByteLevel` with `use_regex` (the GPT-2 pattern) and
// `add_prefix_space` (a space is prepended to each piece that does not start with one, as
// tokenizers does); `Sequence` of those. Regexes are compiled with PCRE2 in UTF mode with
// Unicode properties (\s, \d match Unicode as in the Rust/Oniguruma and JS engines), JIT when
// available, and PCRE2_MATCH_INVALID_UTF: invalid UTF-8 never matches a pattern, so such bytes
// end up in gap pieces and every input byte is in exactly one piece (byte-level BPE then encodes
// them like any other byte). Split() calls `emit` with each piece, in order; the pieces
// concatenate to the input (plus any prefix spaces).
// Thread-safety: a built Pretokenizer is immutable; Split() may run concurrently (each call uses
// its own match data).
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace tidegate::tokenizer {

// A compiled PCRE2 pattern (UTF + UCP + MATCH_INVALID_UTF, JIT if possible).
class Regex {
 public:
  // Returns nullptr and sets *error on a compile error.
  static std::unique_ptr<Regex> Compile(std::string_view pattern, bool literal, std::string* error);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls on_match(begin, end) for each non-overlapping match in `text`, left to right. An empty
  // match advances by one character. Returns false if matching failed (resource limit); the
  // matches reported so far stand.
  bool ForEachMatch(std::string_view text,
                    const std::function<void(size_t begin, size_t end)>& on_match) const;

 private:
  Regex() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class Pretokenizer {
 public:
  using Emit = std::function<void(std::string_view piece)>;

  // `config` is the tokenizer.json "pre_tokenizer" value (null: the whole text is one piece).
  static std::unique_ptr<Pretokenizer> Build(const nlohmann::json& config, std::string* error);
  ~Pretokenizer();

  void Split(std::string_view text, const Emit& emit) const;
  // True if the chain contains a ByteLevel step (the model then works on bytes).
  bool byte_level() const { return byte_level_; }

 private:
  enum class Behavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext, kContiguous };
  struct Step {
    std::unique_ptr<Regex> regex;  // null: no split
    Behavior behavior = Behavior::kIsolated;
    bool invert = false;
    bool add_prefix_space = false;
  };
  Pretokenizer() = default;
  bool AddStep(const nlohmann::json& config, std::string* error);
  void Run(std::string_view text, size_t step, const Emit& emit) const;
  void SplitStep(const Step& s, std::string_view text, size_t next, const Emit& emit) const;

  std::vector<Step> steps_;
  bool byte_level_ = false;
};

}  // namespace tidegate::tokenizer
