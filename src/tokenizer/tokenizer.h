// tokenizer/tokenizer.h — a Hugging Face tokenizer.json (byte-level BPE) in C++: the token ids an
// engine such as vLLM computes for a prompt or a chat request, without Python.
//
// Contract: Load() reads `tokenizer.json` (a directory holding it, or the file itself) and, when
// present beside it, `tokenizer_config.json`. Supported: byte-level BPE as in Llama 3 / 3.1 and
// Qwen 2.5 / 3 — the pre-tokenizer chain of tokenizer/pretokenizer.h, the BPE model of
// tokenizer/bpe.h, `added_tokens` (matched in the text before pre-tokenisation by their exact
// content, leftmost and then longest first, honouring lstrip/rstrip), the post-processor
// (ByteLevel: nothing to add; TemplateProcessing: its `single` special tokens around the text;
// Sequence of those) and the chat templates of tokenizer/chat_template.h. Anything else fails
// Load() with an error naming the file and the part.
// BOS: with add_special_tokens, the post-processor's template decides, unless
// tokenizer_config.json sets `add_bos_token`, which then decides (true prepends `bos_token`).
// Known gaps: a `normalizer` other than null is accepted only for NFC, and the text is NOT
// normalised (right for text already in NFC, which is nearly all text); `single_word` added
// tokens are matched like the others; add_eos_token is ignored.
//
// Encode() never fails: invalid UTF-8 is encoded byte by byte (every byte is a token of a
// byte-level vocabulary), so Decode(Encode(x)) == x for any x, unless an added token with
// lstrip/rstrip swallowed whitespace.
//
// Caching: the BPE result of each pre-token (a bounded PieceCache), and the ids of whole text
// segments between special tokens of at least kSegmentCacheMinBytes (a long shared system prompt
// is tokenised once).
//
// Thread-safety: a loaded Tokenizer is immutable apart from its internally synchronised caches;
// Encode(), EncodeChat() and Decode() may be called concurrently from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/piece_cache.h"
#include "tokenizer/pretokenizer.h"

namespace tidegate::tokenizer {

struct TokenizerOptions {
  size_t piece_cache_entries = BpeModel::kDefaultCacheEntries;
  size_t segment_cache_entries = 512;  // each at most kSegmentCacheMaxBytes of text
};

class Tokenizer {
 public:
  static constexpr size_t kSegmentCacheMinBytes = 256;
  static constexpr size_t kSegmentCacheMaxBytes = 32 * 1024;

  // `path`: a directory with tokenizer.json, or a tokenizer.json file. Returns nullptr and an
  // error naming the file and the problem.
  static std::unique_ptr<Tokenizer> Load(const std::string& path, std::string* error,
                                         TokenizerOptions options = {});
  // From the texts of tokenizer.json and tokenizer_config.json (config may be empty).
  static std::unique_ptr<Tokenizer> FromJson(std::string_view tokenizer_json,
                                             std::string_view config_json, std::string* error,
                                             TokenizerOptions options = {});
  ~Tokenizer();

  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens = true) const;
  void EncodeTo(std::string_view text, bool add_special_tokens, std::vector<int32_t>* out) const;
  // The bytes of the ids (unknown ids are skipped).
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // The chat template's string, and its ids (encoded without the post-processor, as
  // apply_chat_template does: the template writes the BOS itself).
  std::optional<std::string> RenderChat(const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt, std::string* error) const;
  std::optional<std::vector<int32_t>> EncodeChat(const std::vector<ChatMessage>& messages,
                                                 bool add_generation_prompt,
                                                 std::string* error) const;
  const ChatTemplate& chat_template() const { return chat_; }

  // A token's id: an added token's content or a vocabulary entry (raw bytes).
  std::optional<int32_t> TokenId(std::string_view token) const;
  std::optional<int32_t> bos_id() const { return bos_id_; }
  // The ids add_special_tokens puts before and after the text.
  const std::vector<int32_t>& prefix_ids() const { return prefix_; }
  const std::vector<int32_t>& suffix_ids() const { return suffix_; }
  size_t vocab_size() const;  // model vocabulary + added tokens
  const PieceCache& piece_cache() const { return model_->cache(); }
  const PieceCache& segment_cache() const { return segments_; }

 private:
  explicit Tokenizer(const TokenizerOptions& o)
      : segments_(o.segment_cache_entries, kSegmentCacheMaxBytes) {}
  bool Init(const nlohmann::json& tok, const nlohmann::json& config, const TokenizerOptions& o,
            std::string* error);
  bool InitPostProcessor(const nlohmann::json& pp, std::string* error);
  void EncodeSegment(std::string_view text, std::vector<int32_t>* out) const;

  struct Added {
    std::string content;
    int32_t id;
    bool special, lstrip, rstrip;
  };
  std::unique_ptr<Pretokenizer> pre_;
  std::unique_ptr<BpeModel> model_;
  std::vector<Added> added_;
  std::vector<std::vector<size_t>> added_by_byte_;  // first byte → indices, longest first
  std::vector<std::string> added_by_id_;            // id → content, for Decode
  std::vector<char> special_by_id_;
  std::vector<int32_t> prefix_, suffix_;
  std::optional<int32_t> bos_id_;
  ChatTemplate chat_;
  PieceCache segments_;
};

// Parses an OpenAI `messages` array: each {role, content} with content a string or an array of
// {"type": "text", "text": ...} parts (joined with "\n", as vLLM does for string-content
// templates). False and an error naming the message otherwise.
bool ParseChatMessages(const nlohmann::json& messages, std::vector<ChatMessage>* out,
                       std::string* error);

}  // namespace tidegate::tokenizer
