// libFuzzer target: the tokenizer (tokenizer/tokenizer.h) on arbitrary bytes, invalid UTF-8
// included, with the tiny test tokenizer (tests/unit/data/tiny_tokenizer.json: Llama 3's
// pre-tokenizer regex, byte-level vocabulary, added tokens, lstrip turned off). Invariants: never
// crashes; Decode(Encode(x)) == x (every byte is a token, added tokens decode to their content);
// the piece and segment caches give the same ids as a tokenizer without caches; every id is known.
// The first byte picks the chat path for the rest as one user message: it must render and
// encode to the same ids as the rendered string. Build with `make fuzz`; run e.g.
//   build-fuzz/tokenizer_fuzz -max_total_time=120 fuzz/corpus/tokenizer
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "tokenizer/tokenizer.h"

namespace {

using tidegate::tokenizer::Tokenizer;

std::string TinyJson() {
  const auto path = std::filesystem::path(__FILE__).parent_path().parent_path() / "tests" / "unit" /
                    "data" / "tiny_tokenizer.json";
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Tokenizers {
  std::unique_ptr<Tokenizer> cached, plain;
  Tokenizers() {
    // lstrip/rstrip tokens swallow spaces that Decode cannot give back: off here.
    auto tok = nlohmann::json::parse(TinyJson());
    for (auto& a : tok["added_tokens"]) a["lstrip"] = a["rstrip"] = false;
    const std::string json = tok.dump();
    nlohmann::json config = {
        {"bos_token", "<|bos|>"},
        {"chat_template",
         "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
         "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] "
         "| trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content "
         "%}{% endif %}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>"
         "\n\n' }}"}};
    std::string error;
    // Small caches, so that eviction runs too.
    cached = Tokenizer::FromJson(json, config.dump(), &error, {256, 16});
    plain = Tokenizer::FromJson(json, config.dump(), &error, {0, 0});
    if (!cached || !plain) std::abort();
  }
};

}  // namespace

// The corpus replay test includes this file and calls the body under its own name.
#ifndef TIDEGATE_FUZZ_ENTRY
#define TIDEGATE_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif
extern "C" int TIDEGATE_FUZZ_ENTRY(const uint8_t* data, size_t size) {
  static const Tokenizers t;
  if (size < 1) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  const auto ids = t.cached->Encode(in, /*add_special_tokens=*/false);
  if (t.cached->Decode(ids) != in) std::abort();
  if (t.plain->Encode(in, false) != ids) std::abort();
  for (int32_t id : ids)
    if (id < 0 || static_cast<size_t>(id) >= 310) std::abort();
  const auto with_bos = t.cached->Encode(in, true);
  if (with_bos.empty() || with_bos[0] != 300 ||
      !std::equal(ids.begin(), ids.end(), with_bos.begin() + 1) ||
      with_bos.size() != ids.size() + 1)
    std::abort();
  if (data[0] & 1) {
    std::string error;
    auto text = t.cached->RenderChat({{"user", std::string(in)}}, true, &error);
    if (!text) std::abort();
    auto chat = t.cached->EncodeChat({{"user", std::string(in)}}, true, &error);
    if (!chat || *chat != t.plain->Encode(*text, false)) std::abort();
  }
  return 0;
}
