// Replays the tokenizer fuzz corpus (fuzz/corpus/tokenizer) with the fuzz target's properties:
// Decode(Encode(x)) == x, cached and uncached tokenizers agree, every id is known, BOS comes
// first, and a chat of the input encodes to the ids of its rendered string.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tokenizer/tokenizer.h"

namespace tidegate::tokenizer {
namespace {

std::string ReadAll(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(TokenizerFuzzCorpus, RoundTripsAndAgrees) {
  const auto root = std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
  auto tok =
      nlohmann::json::parse(ReadAll(root / "tests" / "unit" / "data" / "tiny_tokenizer.json"));
  for (auto& a : tok["added_tokens"]) a["lstrip"] = a["rstrip"] = false;
  const nlohmann::json config = {
      {"bos_token", "<|bos|>"},
      {"chat_template",
       "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
       "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | "
       "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% "
       "endif %}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' "
       "}}"}};
  std::string error;
  auto cached = Tokenizer::FromJson(tok.dump(), config.dump(), &error, {256, 16});
  ASSERT_TRUE(cached) << error;
  auto plain = Tokenizer::FromJson(tok.dump(), config.dump(), &error, {0, 0});
  ASSERT_TRUE(plain) << error;

  const auto dir = root / "fuzz" / "corpus" / "tokenizer";
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string data = ReadAll(entry.path());
    ++files;
    if (data.empty()) continue;
    const std::string_view in = std::string_view(data).substr(1);
    const auto ids = cached->Encode(in, false);
    EXPECT_EQ(cached->Decode(ids), in) << entry.path();
    EXPECT_EQ(plain->Encode(in, false), ids) << entry.path();
    for (int32_t id : ids) EXPECT_TRUE(id >= 0 && id < 310) << entry.path() << " id " << id;
    const auto with_bos = cached->Encode(in, true);
    ASSERT_FALSE(with_bos.empty());
    EXPECT_EQ(with_bos[0], 300);
    EXPECT_EQ(std::vector<int32_t>(with_bos.begin() + 1, with_bos.end()), ids) << entry.path();
    if (data[0] & 1) {
      auto text = cached->RenderChat({{"user", std::string(in)}}, true, &error);
      ASSERT_TRUE(text) << error;
      auto chat = cached->EncodeChat({{"user", std::string(in)}}, true, &error);
      ASSERT_TRUE(chat) << error;
      EXPECT_EQ(*chat, plain->Encode(*text, false)) << entry.path();
    }
  }
  EXPECT_GE(files, 5);
}

}  // namespace
}  // namespace tidegate::tokenizer
