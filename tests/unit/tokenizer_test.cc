// The tokenizer (tokenizer/) on a tiny hand-written tokenizer.json (tests/unit/data/
// tiny_tokenizer.json: the 256 byte-level symbols with id == byte, a few merges, added tokens,
// Llama 3's pre-tokenizer regex): BPE mechanics, the pre-tokenizer's split behaviours, added
// tokens, BOS handling, the caches, concurrency, chat rendering and load errors. The real
// Llama 3 / Qwen files are checked against the JS tokenizer in
// tests/integration/tokenizer.test.mjs.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

namespace tidegate::tokenizer {
namespace {

using Ids = std::vector<int32_t>;

std::filesystem::path DataDir() { return std::filesystem::path(__FILE__).parent_path() / "data"; }

std::string TinyJson() {
  std::ifstream f(DataDir() / "tiny_tokenizer.json", std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::unique_ptr<Tokenizer> Tiny(const std::string& config = "",
                                const std::function<void(nlohmann::json&)>& edit = {},
                                TokenizerOptions o = {}) {
  std::string json = TinyJson();
  if (edit) {
    auto j = nlohmann::json::parse(json);
    edit(j);
    json = j.dump();
  }
  std::string error;
  auto t = Tokenizer::FromJson(json, config, &error, o);
  EXPECT_TRUE(t) << error;
  return t;
}

std::vector<std::string> Pieces(const Pretokenizer& p, std::string_view text) {
  std::vector<std::string> out;
  p.Split(text, [&](std::string_view s) { out.emplace_back(s); });
  return out;
}

constexpr std::string_view kLlama3Template =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim "
    "+ '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif "
    "%}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

TEST(Tokenizer, MergesByRank) {
  auto t = Tiny();
  ASSERT_TRUE(t);
  EXPECT_EQ(t->Encode("hello world", false), (Ids{259, 264}));
  // "b c" (rank 12) comes before "a b" (rank 13), although "ab" is on the left.
  EXPECT_EQ(t->Encode("abc", false), (Ids{97, 268}));
  // Equal ranks: leftmost first.
  EXPECT_EQ(t->Encode("aaa", false), (Ids{265, 97}));
  EXPECT_EQ(t->Encode("aaaa", false), (Ids{265, 265}));
  // No merges apply: one id per byte (id == byte in the tiny vocabulary).
  EXPECT_EQ(t->Encode("xyz", false), (Ids{'x', 'y', 'z'}));
  EXPECT_EQ(t->Encode("", false), Ids{});
  EXPECT_EQ(t->vocab_size(), 271u + 7u);
}

TEST(Tokenizer, IgnoreMergesTakesWholeVocabularyWords) {
  auto t = Tiny("", [](nlohmann::json& j) { j["model"]["ignore_merges"] = true; });
  ASSERT_TRUE(t);
  EXPECT_EQ(t->Encode("abc", false), (Ids{270}));
  EXPECT_EQ(t->Encode("abcd", false), (Ids{97, 268, 'd'}));
}

TEST(Tokenizer, MergesAsPairs) {
  auto t = Tiny("", [](nlohmann::json& j) {
    nlohmann::json pairs = nlohmann::json::array();
    for (const auto& m : j["model"]["merges"]) {
      const std::string s = m;
      pairs.push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
    }
    j["model"]["merges"] = pairs;
  });
  ASSERT_TRUE(t);
  EXPECT_EQ(t->Encode("hello world abc", false), (Ids{259, 264, ' ', 97, 268}));
}

TEST(Tokenizer, PretokenizerFollowsTheLlama3Pattern) {
  auto t = Tiny();
  ASSERT_TRUE(t);
  // "\s+(?!\S)" leaves the last space to the word: "  world" → " ", " world".
  EXPECT_EQ(t->Encode("  world", false), (Ids{' ', 264}));
  std::string error;
  auto pre = Pretokenizer::Build(nlohmann::json::parse(TinyJson())["pre_tokenizer"], &error);
  ASSERT_TRUE(pre) << error;
  EXPECT_EQ(Pieces(*pre, "1234567"), (std::vector<std::string>{"123", "456", "7"}));
  EXPECT_EQ(Pieces(*pre, "I'M you're WE'LL"),
            (std::vector<std::string>{"I", "'M", " you", "'re", " WE", "'LL"}));
  EXPECT_EQ(Pieces(*pre, "a\n\n\nb  \t"), (std::vector<std::string>{"a", "\n\n\n", "b", "  \t"}));
  EXPECT_EQ(Pieces(*pre, "x = f(1);\n"),
            (std::vector<std::string>{"x", " =", " f", "(", "1", ");\n"}));
  // Invalid UTF-8 never matches; the bytes still land in exactly one piece each.
  std::string joined;
  for (const auto& p : Pieces(*pre, "ab\xff\xfe cd\xc3")) joined += p;
  EXPECT_EQ(joined, "ab\xff\xfe cd\xc3");
}

TEST(Pretokenizer, SplitBehaviours) {
  auto pieces = [](const char* behavior, bool invert = false) {
    nlohmann::json c = {{"type", "Split"},
                        {"pattern", {{"String", "-"}}},
                        {"behavior", behavior},
                        {"invert", invert}};
    std::string error;
    auto p = Pretokenizer::Build(c, &error);
    EXPECT_TRUE(p) << error;
    return Pieces(*p, "the-final--countdown");
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(pieces("Isolated"), (V{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(pieces("Removed"), (V{"the", "final", "countdown"}));
  EXPECT_EQ(pieces("MergedWithPrevious"), (V{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(pieces("MergedWithNext"), (V{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(pieces("Contiguous"), (V{"the", "-", "final", "--", "countdown"}));
  EXPECT_EQ(pieces("Removed", true), (V{"-", "-", "-"}));
}

TEST(Pretokenizer, ByteLevelWithItsOwnRegexAndPrefixSpace) {
  std::string error;
  auto p = Pretokenizer::Build(
      {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}}, &error);
  ASSERT_TRUE(p) << error;
  EXPECT_TRUE(p->byte_level());
  EXPECT_EQ(Pieces(*p, "hello world's 42"),
            (std::vector<std::string>{" hello", " world", "'s", " 42"}));
}

TEST(Tokenizer, AddedTokensAreMatchedBeforePretokenisation) {
  auto t = Tiny();
  ASSERT_TRUE(t);
  EXPECT_EQ(t->Encode("a<|eot|>b", false), (Ids{97, 301, 98}));
  EXPECT_EQ(t->Encode("<|eot|><|eot|>", false), (Ids{301, 301}));
  // Longest first: "<|eot|>" wins over its prefix "<|eo" (another added token).
  EXPECT_EQ(t->Encode("<|eox", false), (Ids{302, 'x'}));
  EXPECT_EQ(t->Encode("<|eot|", false), (Ids{302, 't', '|'}));
  // lstrip: the spaces before <mask> belong to it.
  EXPECT_EQ(t->Encode("a  <mask>", false), (Ids{97, 303}));
  EXPECT_EQ(t->TokenId("<|eot|>"), 301);
  EXPECT_EQ(t->TokenId("hello"), 259);
  EXPECT_EQ(t->TokenId("nope"), std::nullopt);
}

TEST(Tokenizer, BosFromThePostProcessorOrTheConfig) {
  auto t = Tiny(R"({"bos_token": "<|bos|>"})");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->Encode("hello"), (Ids{300, 259}));
  EXPECT_EQ(t->Encode("hello", false), (Ids{259}));
  EXPECT_EQ(t->bos_id(), 300);
  // add_bos_token decides over the template.
  auto off = Tiny(R"({"bos_token": "<|bos|>", "add_bos_token": false})");
  EXPECT_EQ(off->Encode("hello"), (Ids{259}));
  auto on = Tiny(R"({"bos_token": {"content": "<|bos|>"}, "add_bos_token": true})",
                 [](nlohmann::json& j) { j["post_processor"] = nullptr; });
  EXPECT_EQ(on->Encode("hello"), (Ids{300, 259}));
  auto none = Tiny("", [](nlohmann::json& j) { j["post_processor"] = {{"type", "ByteLevel"}}; });
  EXPECT_EQ(none->Encode("hello"), (Ids{259}));
}

TEST(Tokenizer, DecodeInvertsEncodeForAnyBytes) {
  auto t = Tiny();
  ASSERT_TRUE(t);
  for (std::string s : {std::string("hello world"), std::string("ab\xff\xfe cd\xc3"),
                        std::string("\x00\x01 tabs\t\tnl\n\n", 14),
                        std::string("中文 😀 it's 12345"), std::string("a<|eot|>b")}) {
    EXPECT_EQ(t->Decode(t->Encode(s, false)), s);
  }
  EXPECT_EQ(t->Decode(t->Encode("x<|eot|>y")), "<|bos|>x<|eot|>y");
  EXPECT_EQ(t->Decode(t->Encode("x<|eot|>y"), /*skip_special_tokens=*/true), "xy");
  EXPECT_EQ(t->Decode(Ids{-1, 99999, 104}), "h");  // unknown ids are skipped
}

TEST(Tokenizer, PieceCacheServesRepeatedWords) {
  auto t = Tiny();
  ASSERT_TRUE(t);
  // " hello" has no merge for its space, so it is ' ' + 259 from the cache on later repeats.
  const Ids first = t->Encode("hello hello hello", false);
  EXPECT_EQ(first, (Ids{259, ' ', 259, ' ', 259}));
  EXPECT_GE(t->piece_cache().size(), 1u);
  const uint64_t hits = t->piece_cache().hits();
  EXPECT_EQ(t->Encode("hello hello hello", false), first);
  EXPECT_GT(t->piece_cache().hits(), hits);
}

TEST(PieceCache, StaysBounded) {
  PieceCache c(64);
  for (int i = 0; i < 10000; ++i) {
    const int32_t v = i;
    c.Put("key" + std::to_string(i), std::span<const int32_t>(&v, 1));
  }
  EXPECT_LE(c.size(), 2 * (64 + 16));
  Ids out;
  EXPECT_TRUE(c.Get("key9999", &out));
  EXPECT_EQ(out, (Ids{9999}));
  EXPECT_FALSE(c.Get("key0", &out));
  PieceCache off(0);
  off.Put("k", std::span<const int32_t>());
  EXPECT_FALSE(off.Get("k", &out));
  PieceCache small_keys(64, 4);
  small_keys.Put("longer", std::span<const int32_t>());
  EXPECT_FALSE(small_keys.Get("longer", &out));
}

TEST(Tokenizer, SegmentCacheTokenisesALongSharedPromptOnce) {
  auto t = Tiny();
  ASSERT_TRUE(t);
  std::string system;
  while (system.size() < 2000) system += "hello world, abc aaa 12345 ";
  const Ids a = t->Encode(system + "<|eot|>first", false);
  EXPECT_EQ(t->segment_cache().hits(), 0u);
  const Ids b = t->Encode(system + "<|eot|>second", false);
  EXPECT_EQ(t->segment_cache().hits(), 1u);
  const Ids whole = t->Encode(system, false);
  EXPECT_EQ(Ids(a.begin(), a.begin() + whole.size()), whole);
  EXPECT_EQ(Ids(b.begin(), b.begin() + whole.size()), whole);
  // With the caches off the ids are the same.
  auto nocache = Tiny("", {}, TokenizerOptions{0, 0});
  EXPECT_EQ(nocache->Encode(system + "<|eot|>first", false), a);
}

TEST(Tokenizer, ConcurrentEncodesAgree) {
  auto t = Tiny("", {}, TokenizerOptions{64, 8});  // small caches: eviction under contention
  ASSERT_TRUE(t);
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i)
    texts.push_back("hello world " + std::to_string(i * 7919) + " abc" + std::string(i % 300, 'a'));
  auto reference = Tiny("", {}, TokenizerOptions{0, 0});
  std::vector<Ids> want;
  for (const auto& s : texts) want.push_back(reference->Encode(s));
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int round = 0; round < 5; ++round)
        for (size_t i = k; i < texts.size() + k; ++i)
          if (t->Encode(texts[i % texts.size()]) != want[i % texts.size()]) ++bad;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(ChatTemplate, RendersLlama3) {
  nlohmann::json config = {{"bos_token", "<|bos|>"}, {"chat_template", kLlama3Template}};
  auto t = Tiny(config.dump());
  ASSERT_TRUE(t);
  EXPECT_EQ(t->chat_template().kind(), ChatTemplate::Kind::kLlama3);
  std::vector<ChatMessage> msgs = {{"system", "  Be brief.\n"}, {"user", "hello\u3000"}};
  std::string error;
  auto text = t->RenderChat(msgs, true, &error);
  ASSERT_TRUE(text) << error;
  EXPECT_EQ(*text,
            "<|bos|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nhello<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  auto no_gen = t->RenderChat(msgs, false, &error);
  EXPECT_EQ(
      no_gen->size(),
      text->size() - std::string_view("<|start_header_id|>assistant<|end_header_id|>\n\n").size());
  auto ids = t->EncodeChat(msgs, true, &error);
  ASSERT_TRUE(ids);
  EXPECT_EQ(ids->front(), 300);  // the template's BOS, not a second one
  EXPECT_EQ((*ids)[1], 304);     // <|start_header_id|>
  EXPECT_EQ(t->Encode(*text, false), *ids);
  EXPECT_EQ(*t->RenderChat({}, true, &error), "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, RendersLlama31WithItsSystemHeader) {
  auto tpl = ChatTemplate::Detect(
      "{{- bos_token }}{%- if not date_string is defined %}{%- set date_string = \"26 Jul 2024\" "
      "%}{%- endif %}{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}{{- \"Cutting "
      "Knowledge Date: December 2023\\n\" }}...",
      "<|begin_of_text|>");
  ASSERT_EQ(tpl.kind(), ChatTemplate::Kind::kLlama31);
  std::string error;
  EXPECT_EQ(*tpl.Render({{"user", "Hi"}}, true, &error),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge "
            "Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|"
            "end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(*tpl.Render({{"system", " S "}, {"user", "Hi"}}, false, &error),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge "
            "Date: December 2023\nToday Date: 26 Jul 2024\n\nS<|eot_id|><|start_header_id|>user<|"
            "end_header_id|>\n\nHi<|eot_id|>");
  EXPECT_FALSE(tpl.Render({{"tool", "{}"}}, true, &error));
  EXPECT_NE(error.find("tool"), std::string::npos);
}

TEST(ChatTemplate, OtherTemplatesAreRefused) {
  auto t =
      Tiny(R"({"chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}"})");
  EXPECT_EQ(t->chat_template().kind(), ChatTemplate::Kind::kUnsupported);
  std::string error;
  EXPECT_FALSE(t->EncodeChat({{"user", "x"}}, true, &error));
  EXPECT_NE(error.find("not one tidegate renders"), std::string::npos);
  auto none = Tiny();
  EXPECT_FALSE(none->EncodeChat({{"user", "x"}}, true, &error));
  EXPECT_NE(error.find("no chat_template"), std::string::npos);
}

TEST(ChatTemplate, PyStripIsUnicodeAware) {
  EXPECT_EQ(PyStrip(" \t\n x y \r\n"), "x y");
  EXPECT_EQ(PyStrip("\u3000\u00a0x\u2003"), "x");
  EXPECT_EQ(PyStrip("\x1fx\x1c"), "x");  // Python's isspace includes the separators
  EXPECT_EQ(PyStrip("   "), "");
  EXPECT_EQ(PyStrip("\xff x \xc3"), "\xff x \xc3");
}

TEST(ParseChatMessages, StringsAndTextParts) {
  std::vector<ChatMessage> out;
  std::string error;
  ASSERT_TRUE(ParseChatMessages(nlohmann::json::parse(R"([
      {"role": "user", "content": "a"},
      {"role": "user", "content": [{"type": "text", "text": "b"}, {"type": "text", "text": "c"}]}
  ])"),
                                &out, &error))
      << error;
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].content, "b\nc");
  EXPECT_FALSE(ParseChatMessages(nlohmann::json::parse(R"({"role": "user"})"), &out, &error));
  EXPECT_FALSE(ParseChatMessages(nlohmann::json::parse(R"([{"content": "x"}])"), &out, &error));
  EXPECT_NE(error.find("messages[0]"), std::string::npos);
  EXPECT_FALSE(ParseChatMessages(
      nlohmann::json::parse(R"([{"role": "assistant", "content": null}])"), &out, &error));
  EXPECT_FALSE(ParseChatMessages(
      nlohmann::json::parse(R"([{"role": "user", "content": [{"type": "image_url"}]}])"), &out,
      &error));
  EXPECT_NE(error.find("messages[0].content[0]"), std::string::npos);
}

TEST(Tokenizer, LoadErrorsNameTheFileAndTheProblem) {
  std::string error;
  EXPECT_FALSE(Tokenizer::Load("/nonexistent/tokenizer.json", &error));
  EXPECT_NE(error.find("no tokenizer at /nonexistent"), std::string::npos) << error;
  const auto dir = std::filesystem::temp_directory_path() / "tidegate_tokenizer_test";
  std::filesystem::create_directories(dir);
  EXPECT_FALSE(Tokenizer::Load(dir.string(), &error));
  EXPECT_NE(error.find("has no tokenizer.json"), std::string::npos) << error;
  std::ofstream(dir / "tokenizer.json") << "{not json";
  EXPECT_FALSE(Tokenizer::Load(dir.string(), &error));
  EXPECT_NE(error.find("tokenizer.json: not valid JSON"), std::string::npos) << error;
  std::ofstream(dir / "tokenizer.json") << TinyJson();
  std::ofstream(dir / "tokenizer_config.json") << "[";
  EXPECT_FALSE(Tokenizer::Load(dir.string(), &error));
  EXPECT_NE(error.find("tokenizer_config.json: not valid JSON"), std::string::npos) << error;
  std::ofstream(dir / "tokenizer_config.json") << R"({"bos_token": "<|bos|>"})";
  auto ok = Tokenizer::Load((dir / "tokenizer.json").string(), &error);
  ASSERT_TRUE(ok) << error;
  EXPECT_EQ(ok->Encode("hello"), (Ids{300, 259}));
  std::filesystem::remove_all(dir);

  auto fails = [&](const std::function<void(nlohmann::json&)>& edit, const char* want) {
    auto j = nlohmann::json::parse(TinyJson());
    edit(j);
    std::string e;
    EXPECT_FALSE(Tokenizer::FromJson(j.dump(), "", &e)) << want;
    EXPECT_NE(e.find(want), std::string::npos) << e;
  };
  fails([](auto& j) { j.erase("model"); }, "no \"model\"");
  fails([](auto& j) { j["model"]["merges"].push_back("zz qq"); }, "is not in the vocabulary");
  fails([](auto& j) { j["model"]["merges"].push_back("nospace"); }, "expected \"a b\"");
  fails([](auto& j) { j["model"]["type"] = "Unigram"; }, "only \"type\": \"BPE\"");
  fails([](auto& j) { j["model"]["dropout"] = 0.1; }, "\"dropout\" is not supported");
  fails([](auto& j) { j["pre_tokenizer"] = {{"type", "Metaspace"}}; }, "\"Metaspace\" is not");
  fails([](auto& j) { j["pre_tokenizer"]["pretokenizers"].erase(1); }, "only byte-level BPE");
  fails([](auto& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed"; },
        "cannot compile the regex");
  fails([](auto& j) { j["normalizer"] = {{"type", "Lowercase"}}; }, "is not supported (only");
  fails(
      [](auto& j) {
        j["post_processor"] = {{"type", "RobertaProcessing"}};
      },
      "\"RobertaProcessing\" is not supported");
  fails([](auto& j) { j["model"]["vocab"]["h"] = "x"; }, "is not a non-negative integer");
  std::string e;
  EXPECT_FALSE(Tokenizer::FromJson(TinyJson(), R"({"add_bos_token": true})", &e));
  EXPECT_NE(e.find("add_bos_token is true but bos_token"), std::string::npos) << e;
}

}  // namespace
}  // namespace tidegate::tokenizer
