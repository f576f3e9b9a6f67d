// tokenizer/bpe.h — the BPE model of a Hugging Face tokenizer.json ("model": {"type": "BPE"}).
//
// Contract: Build() reads `vocab` and `merges` (each merge an "a b" string or an ["a", "b"]
// pair; its rank is its index) and `ignore_merges`, `unk_token`. With byte_level (the
// pre-tokenizer has a ByteLevel step) the vocabulary's strings are read through the GPT-2
// byte-to-unicode table, so the model works on raw bytes: a piece's initial symbols are its
// bytes. Otherwise the symbols are the piece's UTF-8 characters. EncodePiece() appends a piece's
// ids: with ignore_merges a piece that is itself in the vocabulary is one token; otherwise the
// adjacent pair with the lowest merge rank is merged (leftmost first on ties) until no pair has
// a rank — the tokenizers algorithm. A symbol missing from the vocabulary becomes unk_token when
// there is one and is dropped otherwise (never for byte-level vocabularies, which hold all 256
// bytes). Results of pieces that needed merging are kept in a bounded PieceCache.
// Not supported (Build fails, naming it): dropout, continuing_subword_prefix,
// end_of_word_suffix, byte_fallback.
// Thread-safety: immutable after Build() except for the internally synchronised cache;
// EncodePiece() may run concurrently.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/piece_cache.h"

namespace tidegate::tokenizer {

// GPT-2's byte ↔ unicode table (ByteLevel): printable Latin-1 bytes map to themselves, the
// others to U+0100 upwards in byte order.
uint32_t ByteToCodepoint(uint8_t b);
// The byte a codepoint stands for, or -1.
int CodepointToByte(uint32_t cp);

class BpeModel {
 public:
  static constexpr size_t kDefaultCacheEntries = 1 << 16;

  static std::unique_ptr<BpeModel> Build(const nlohmann::json& model, bool byte_level,
                                         std::string* error,
                                         size_t cache_entries = kDefaultCacheEntries);

  void EncodePiece(std::string_view piece, std::vector<int32_t>* out) const;

  // The id of a vocabulary entry given as raw bytes (byte-level) or as text.
  std::optional<int32_t> TokenId(std::string_view token) const;
  // The raw bytes of a vocabulary id, or nullptr.
  const std::string* TokenBytes(int32_t id) const;
  size_t vocab_size() const { return vocab_.size(); }
  size_t merges_size() const { return merges_.size(); }
  const PieceCache& cache() const { return cache_; }

 private:
  explicit BpeModel(size_t cache_entries) : cache_(cache_entries) {}
  void Merge(std::string_view piece, std::vector<int32_t>* out) const;

  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> vocab_;
  std::vector<std::string> id_bytes_;  // indexed by id; empty for gaps
  struct MergeRule {
    int32_t rank, merged;
  };
  std::unordered_map<uint64_t, MergeRule> merges_;  // (left id << 32 | right id) → rule
  std::array<int32_t, 256> byte_ids_{};             // byte-level: the id of each single byte
  bool byte_level_ = false;
  bool ignore_merges_ = false;
  std::optional<int32_t> unk_;
  PieceCache cache_;
};

}  // namespace tidegate::tokenizer
