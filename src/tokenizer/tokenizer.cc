#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace tidegate::tokenizer {
namespace {

bool ReadFile(const std::filesystem::path& p, std::string* out, std::string* error) {
  std::ifstream in(p, std::ios::binary);
  if (!in) {
    *error = "cannot read " + p.string() + ": " + std::strerror(errno);
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) {
    *error = "cannot read " + p.string();
    return false;
  }
  *out = std::move(ss).str();
  return true;
}

bool IsAsciiSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// A token given in tokenizer_config.json as a string or as {"content": ...}.
std::optional<std::string> ConfigToken(const nlohmann::json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return std::nullopt;
  const auto& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return std::nullopt;
}

}  // namespace

Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::Load(const std::string& path, std::string* error,
                                           TokenizerOptions options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path file = path;
  if (fs::is_directory(file, ec)) file /= "tokenizer.json";
  if (!fs::exists(file, ec)) {
    *error = "no tokenizer at " + path +
             (fs::is_directory(path, ec) ? " (the directory has no tokenizer.json)" : "");
    return nullptr;
  }
  std::string tok_text, config_text;
  if (!ReadFile(file, &tok_text, error)) return nullptr;
  const fs::path config = file.parent_path() / "tokenizer_config.json";
  if (fs::exists(config, ec) && !ReadFile(config, &config_text, error)) return nullptr;
  std::string err;
  auto t = FromJson(tok_text, config_text, &err, options);
  if (!t) {
    // FromJson names which of the two files it was; add the path.
    *error =
        (err.rfind("tokenizer_config.json", 0) == 0 ? config.string() : file.string()) + ": " + err;
  }
  return t;
}

std::unique_ptr<Tokenizer> Tokenizer::FromJson(std::string_view tokenizer_json,
                                               std::string_view config_json, std::string* error,
                                               TokenizerOptions options) {
  nlohmann::json tok, config;
  try {
    tok = nlohmann::json::parse(tokenizer_json);
  } catch (const nlohmann::json::exception& e) {
    *error = std::string("not valid JSON: ") + e.what();
    return nullptr;
  }
  if (!config_json.empty()) {
    try {
      config = nlohmann::json::parse(config_json);
    } catch (const nlohmann::json::exception& e) {
      *error = std::string("tokenizer_config.json: not valid JSON: ") + e.what();
      return nullptr;
    }
  }
  std::unique_ptr<Tokenizer> t(new Tokenizer(options));
  try {
    if (!t->Init(tok, config, options, error)) return nullptr;
  } catch (const nlohmann::json::exception& e) {
    *error = std::string("unexpected structure: ") + e.what();
    return nullptr;
  }
  return t;
}

bool Tokenizer::Init(const nlohmann::json& tok, const nlohmann::json& config,
                     const TokenizerOptions& o, std::string* error) {
  if (!tok.is_object() || !tok.contains("model")) {
    *error = "not a tokenizer.json (no \"model\")";
    return false;
  }
  if (tok.contains("normalizer") && !tok["normalizer"].is_null()) {
    const auto& n = tok["normalizer"];
    if (!(n.is_object() && n.value("type", "") == "NFC")) {
      *error = "normalizer " + n.dump().substr(0, 80) + " is not supported (only null and NFC)";
      return false;
    }
  }
  pre_ = Pretokenizer::Build(tok.value("pre_tokenizer", nlohmann::json()), error);
  if (!pre_) return false;
  if (!pre_->byte_level()) {
    *error = "only byte-level BPE is supported (the pre_tokenizer has no ByteLevel step)";
    return false;
  }
  model_ = BpeModel::Build(tok["model"], pre_->byte_level(), error, o.piece_cache_entries);
  if (!model_) return false;

  if (tok.contains("added_tokens") && tok["added_tokens"].is_array()) {
    for (const auto& a : tok["added_tokens"]) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
          !a.contains("content") || !a["content"].is_string() || a["id"].get<int64_t>() < 0) {
        *error =
            "added_tokens: each entry needs an \"id\" and a \"content\": " + a.dump().substr(0, 80);
        return false;
      }
      Added t{a["content"], a["id"].get<int32_t>(), a.value("special", false),
              a.value("lstrip", false), a.value("rstrip", false)};
      if (t.content.empty()) continue;
      added_.push_back(std::move(t));
    }
  }
  // Longest first, so that the first hit at a position is the longest one.
  std::vector<size_t> order(added_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return added_[a].content.size() > added_[b].content.size();
  });
  added_by_byte_.assign(256, {});
  for (size_t i : order)
    added_by_byte_[static_cast<unsigned char>(added_[i].content[0])].push_back(i);
  for (const auto& a : added_) {
    if (static_cast<size_t>(a.id) >= added_by_id_.size()) {
      added_by_id_.resize(a.id + 1);
      special_by_id_.resize(a.id + 1, 0);
    }
    added_by_id_[a.id] = a.content;
    special_by_id_[a.id] = a.special ? 1 : 0;
  }

  if (!InitPostProcessor(tok.value("post_processor", nlohmann::json()), error)) return false;

  const auto bos = ConfigToken(config, "bos_token");
  if (bos) bos_id_ = TokenId(*bos);
  if (config.is_object() && config.contains("add_bos_token") &&
      config["add_bos_token"].is_boolean()) {
    if (bos_id_) std::erase(prefix_, *bos_id_);
    if (config["add_bos_token"].get<bool>()) {
      if (!bos_id_) {
        *error = "tokenizer_config.json: add_bos_token is true but bos_token is not a token";
        return false;
      }
      prefix_.insert(prefix_.begin(), *bos_id_);
    }
  }
  if (config.is_object() && config.contains("chat_template") &&
      config["chat_template"].is_string()) {
    chat_ = ChatTemplate::Detect(config["chat_template"].get<std::string>(), bos.value_or(""));
  }
  return true;
}

bool Tokenizer::InitPostProcessor(const nlohmann::json& pp, std::string* error) {
  if (pp.is_null()) return true;
  const std::string type = pp.is_object() ? pp.value("type", "") : "";
  if (type == "ByteLevel") return true;  // offsets only
  if (type == "Sequence") {
    if (!pp.contains("processors") || !pp["processors"].is_array()) {
      *error = "post_processor Sequence: missing \"processors\"";
      return false;
    }
    for (const auto& p : pp["processors"])
      if (!InitPostProcessor(p, error)) return false;
    return true;
  }
  if (type == "TemplateProcessing") {
    if (!pp.contains("single") || !pp["single"].is_array()) {
      *error = "post_processor TemplateProcessing: missing \"single\"";
      return false;
    }
    const auto specials = pp.value("special_tokens", nlohmann::json::object());
    bool seen_sequence = false;
    for (const auto& piece : pp["single"]) {
      if (piece.contains("Sequence")) {
        seen_sequence = true;
        continue;
      }
      if (!piece.contains("SpecialToken") || !piece["SpecialToken"].contains("id")) {
        *error = "post_processor TemplateProcessing: unexpected piece " + piece.dump();
        return false;
      }
      const std::string name = piece["SpecialToken"]["id"];
      std::vector<int32_t> ids;
      if (specials.contains(name) && specials[name].contains("ids")) {
        for (const auto& id : specials[name]["ids"]) ids.push_back(id.get<int32_t>());
      } else if (auto id = TokenId(name)) {
        ids.push_back(*id);
      } else {
        *error = "post_processor TemplateProcessing: unknown special token \"" + name + "\"";
        return false;
      }
      auto& dst = seen_sequence ? suffix_ : prefix_;
      dst.insert(dst.end(), ids.begin(), ids.end());
    }
    return true;
  }
  *error = "post_processor \"" + type +
           "\" is not supported (ByteLevel, TemplateProcessing, "
           "Sequence are)";
  return false;
}

std::optional<int32_t> Tokenizer::TokenId(std::string_view token) const {
  for (const auto& a : added_)
    if (a.content == token) return a.id;
  return model_->TokenId(token);
}

size_t Tokenizer::vocab_size() const {
  size_t n = model_->vocab_size();
  for (const auto& a : added_)
    if (!model_->TokenBytes(a.id)) ++n;
  return n;
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  EncodeTo(text, add_special_tokens, &out);
  return out;
}

void Tokenizer::EncodeTo(std::string_view text, bool add_special_tokens,
                         std::vector<int32_t>* out) const {
  if (add_special_tokens) out->insert(out->end(), prefix_.begin(), prefix_.end());
  // Split on added tokens: scan for a byte that starts one, then try them longest first.
  size_t seg_start = 0, i = 0;
  while (i < text.size()) {
    const auto& cands = added_by_byte_[static_cast<unsigned char>(text[i])];
    const Added* hit = nullptr;
    for (size_t c : cands) {
      const auto& a = added_[c];
      if (text.compare(i, a.content.size(), a.content) == 0) {
        hit = &a;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t seg_end = i;
    if (hit->lstrip)
      while (seg_end > seg_start && IsAsciiSpace(text[seg_end - 1])) --seg_end;
    EncodeSegment(text.substr(seg_start, seg_end - seg_start), out);
    out->push_back(hit->id);
    i += hit->content.size();
    if (hit->rstrip)
      while (i < text.size() && IsAsciiSpace(text[i])) ++i;
    seg_start = i;
  }
  EncodeSegment(text.substr(seg_start), out);
  if (add_special_tokens) out->insert(out->end(), suffix_.begin(), suffix_.end());
}

void Tokenizer::EncodeSegment(std::string_view text, std::vector<int32_t>* out) const {
  if (text.empty()) return;
  const bool cacheable =
      text.size() >= kSegmentCacheMinBytes && text.size() <= kSegmentCacheMaxBytes;
  if (cacheable && segments_.Get(text, out)) return;
  const size_t before = out->size();
  pre_->Split(text, [&](std::string_view piece) { model_->EncodePiece(piece, out); });
  if (cacheable)
    segments_.Put(text, std::span<const int32_t>(out->data() + before, out->size() - before));
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string out;
  for (int32_t id : ids) {
    if (id >= 0 && static_cast<size_t>(id) < added_by_id_.size() && !added_by_id_[id].empty()) {
      if (!(skip_special_tokens && special_by_id_[id])) out.append(added_by_id_[id]);
      continue;
    }
    if (const std::string* b = model_->TokenBytes(id)) out.append(*b);
  }
  return out;
}

std::optional<std::string> Tokenizer::RenderChat(const std::vector<ChatMessage>& messages,
                                                 bool add_generation_prompt,
                                                 std::string* error) const {
  return chat_.Render(messages, add_generation_prompt, error);
}

std::optional<std::vector<int32_t>> Tokenizer::EncodeChat(const std::vector<ChatMessage>& messages,
                                                          bool add_generation_prompt,
                                                          std::string* error) const {
  auto text = chat_.Render(messages, add_generation_prompt, error);
  if (!text) return std::nullopt;
  return Encode(*text, /*add_special_tokens=*/false);
}

bool ParseChatMessages(const nlohmann::json& messages, std::vector<ChatMessage>* out,
                       std::string* error) {
  if (!messages.is_array()) {
    *error = "\"messages\" must be an array";
    return false;
  }
  out->clear();
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      *error = where + ": expected an object with a string \"role\"";
      return false;
    }
    ChatMessage msg{m["role"].get<std::string>(), {}};
    const auto it = m.find("content");
    if (it == m.end() || it->is_null()) {
      *error = where + ": \"content\" is missing or null (tool calls are not rendered)";
      return false;
    }
    if (it->is_string()) {
      msg.content = it->get<std::string>();
    } else if (it->is_array()) {
      bool first = true;
      for (size_t k = 0; k < it->size(); ++k) {
        const auto& part = (*it)[k];
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
            !part["text"].is_string()) {
          *error = where + ".content[" + std::to_string(k) +
                   "]: only {\"type\": \"text\", \"text\": ...} parts are supported";
          return false;
        }
        if (!first) msg.content.push_back('\n');
        msg.content.append(part["text"].get_ref<const std::string&>());
        first = false;
      }
    } else {
      *error = where + ": \"content\" must be a string or an array of text parts";
      return false;
    }
    out->push_back(std::move(msg));
  }
  return true;
}

}  // namespace tidegate::tokenizer
