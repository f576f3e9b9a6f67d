#include "tokenizer/bpe.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <queue>

namespace tidegate::tokenizer {
namespace {

struct ByteTable {
  std::array<uint32_t, 256> to_cp{};
  std::array<int16_t, 512> to_byte{};  // every mapped codepoint is < 512
  ByteTable() {
    to_byte.fill(-1);
    uint32_t extra = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      to_cp[b] = printable ? static_cast<uint32_t>(b) : extra++;
      to_byte[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteTable& Table() {
  static const ByteTable t;
  return t;
}

// Decodes UTF-8 `s` through the byte-level table into raw bytes; false if a character is not
// in the table (or the UTF-8 is invalid).
bool UnmapByteLevel(std::string_view s, std::string* out) {
  out->clear();
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    uint32_t cp;
    if (c < 0x80) {
      cp = c;
      i += 1;
    } else if ((c >> 5) == 0x6 && i + 1 < s.size()) {
      cp = ((c & 0x1F) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3F);
      i += 2;
    } else {
      return false;  // the table's codepoints are all below U+0800
    }
    const int b = CodepointToByte(cp);
    if (b < 0) return false;
    out->push_back(static_cast<char>(b));
  }
  return true;
}

// UTF-8 character length at s[i], 1 for invalid bytes.
size_t Utf8Len(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
  return i + n > s.size() ? 1 : n;
}

}  // namespace

uint32_t ByteToCodepoint(uint8_t b) { return Table().to_cp[b]; }
int CodepointToByte(uint32_t cp) { return cp < 512 ? Table().to_byte[cp] : -1; }

std::unique_ptr<BpeModel> BpeModel::Build(const nlohmann::json& model, bool byte_level,
                                          std::string* error, size_t cache_entries) {
  if (!model.is_object() || model.value("type", std::string("BPE")) != "BPE") {
    *error = "model: only \"type\": \"BPE\" is supported";
    return nullptr;
  }
  auto is_set = [&](const char* key) {
    return model.contains(key) && !model[key].is_null() &&
           !(model[key].is_string() && model[key].get<std::string>().empty()) &&
           !(model[key].is_boolean() && !model[key].get<bool>());
  };
  for (const char* key :
       {"dropout", "continuing_subword_prefix", "end_of_word_suffix", "byte_fallback"}) {
    if (is_set(key)) {
      *error = std::string("model: \"") + key + "\" is not supported";
      return nullptr;
    }
  }
  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    *error = "model: missing \"vocab\" object";
    return nullptr;
  }
  if (!model.contains("merges") || !model["merges"].is_array()) {
    *error = "model: missing \"merges\" array";
    return nullptr;
  }
  std::unique_ptr<BpeModel> m(new BpeModel(cache_entries));
  m->byte_level_ = byte_level;
  m->ignore_merges_ = model.value("ignore_merges", false);

  // Vocabulary, keyed by the model's own strings while loading the merges.
  std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> by_text;
  by_text.reserve(model["vocab"].size());
  m->vocab_.reserve(model["vocab"].size());
  std::string bytes;
  for (const auto& [text, idv] : model["vocab"].items()) {
    if (!idv.is_number_integer() || idv.get<int64_t>() < 0 || idv.get<int64_t>() > INT32_MAX) {
      *error = "model.vocab: the id of \"" + text + "\" is not a non-negative integer";
      return nullptr;
    }
    const auto id = idv.get<int32_t>();
    by_text.emplace(text, id);
    if (byte_level) {
      if (!UnmapByteLevel(text, &bytes)) bytes = text;  // not byte-level text: keep it as is
    } else {
      bytes = text;
    }
    if (static_cast<size_t>(id) >= m->id_bytes_.size()) m->id_bytes_.resize(id + 1);
    m->id_bytes_[id] = bytes;
    m->vocab_.emplace(bytes, id);
  }
  if (byte_level) {
    for (int b = 0; b < 256; ++b) {
      auto it = m->vocab_.find(std::string_view(reinterpret_cast<const char*>(&b), 1));
      m->byte_ids_[b] = it == m->vocab_.end() ? -1 : it->second;
    }
  }
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto it = by_text.find(model["unk_token"].get<std::string>());
    if (it != by_text.end()) m->unk_ = it->second;
  }

  const auto& merges = model["merges"];
  m->merges_.reserve(merges.size());
  std::string left, right;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& e = merges[rank];
    if (e.is_string()) {
      const std::string& s = e.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 == s.size()) {
        *error = "model.merges[" + std::to_string(rank) + "]: expected \"a b\", got \"" + s + "\"";
        return nullptr;
      }
      left.assign(s, 0, sp);
      right.assign(s, sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      left = e[0].get<std::string>();
      right = e[1].get<std::string>();
    } else {
      *error = "model.merges[" + std::to_string(rank) + "]: expected \"a b\" or [\"a\", \"b\"]";
      return nullptr;
    }
    auto l = by_text.find(left), r = by_text.find(right), merged = by_text.find(left + right);
    if (l == by_text.end() || r == by_text.end() || merged == by_text.end()) {
      *error = "model.merges[" + std::to_string(rank) + "]: \"" + left + "\" + \"" + right +
               "\" is not in the vocabulary";
      return nullptr;
    }
    const uint64_t key =
        (static_cast<uint64_t>(l->second) << 32) | static_cast<uint32_t>(r->second);
    m->merges_.emplace(key, MergeRule{static_cast<int32_t>(rank), merged->second});
  }
  return m;
}

std::optional<int32_t> BpeModel::TokenId(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::TokenBytes(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_bytes_.size() || id_bytes_[id].empty())
    return nullptr;
  return &id_bytes_[id];
}

void BpeModel::EncodePiece(std::string_view piece, std::vector<int32_t>* out) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    auto it = vocab_.find(piece);
    if (it != vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  if (piece.size() == 1 && byte_level_ && byte_ids_[static_cast<uint8_t>(piece[0])] >= 0) {
    out->push_back(byte_ids_[static_cast<uint8_t>(piece[0])]);
    return;
  }
  if (cache_.Get(piece, out)) return;
  const size_t before = out->size();
  Merge(piece, out);
  cache_.Put(piece, std::span<const int32_t>(out->data() + before, out->size() - before));
}

void BpeModel::Merge(std::string_view piece, std::vector<int32_t>* out) const {
  // Symbols in a doubly linked list over a vector; a heap of candidate merges ordered by
  // (rank, position). An entry is stale once either side has changed; it is then skipped.
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // indices, -1 at the ends
  };
  std::vector<Symbol> sym;
  sym.reserve(piece.size());
  for (size_t i = 0; i < piece.size();) {
    size_t len = byte_level_ ? 1 : Utf8Len(piece, i);
    int32_t id = -1;
    if (byte_level_) {
      id = byte_ids_[static_cast<uint8_t>(piece[i])];
    } else {
      auto it = vocab_.find(piece.substr(i, len));
      if (it != vocab_.end()) id = it->second;
    }
    if (id < 0 && unk_) id = *unk_;
    i += len;
    if (id < 0) continue;  // no such symbol and no unk token: dropped, as tokenizers does
    const auto n = static_cast<int32_t>(sym.size());
    sym.push_back({id, n - 1, -1});
    if (n > 0) sym[n - 1].next = n;
  }
  if (sym.empty()) return;

  struct Candidate {
    int32_t rank, pos, left_id, right_id, merged;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto consider = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = sym[left].next;
    if (right < 0) return;
    const uint64_t key =
        (static_cast<uint64_t>(sym[left].id) << 32) | static_cast<uint32_t>(sym[right].id);
    auto it = merges_.find(key);
    if (it != merges_.end())
      heap.push({it->second.rank, left, sym[left].id, sym[right].id, it->second.merged});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i) consider(i);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& l = sym[c.pos];
    if (l.id != c.left_id || l.next < 0 || sym[l.next].id != c.right_id) continue;  // stale
    const int32_t r = l.next;
    l.id = c.merged;
    l.next = sym[r].next;
    if (l.next >= 0) sym[l.next].prev = c.pos;
    sym[r].id = -2;  // removed
    if (l.prev >= 0) consider(l.prev);
    consider(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) out->push_back(sym[i].id);
}

}  // namespace tidegate::tokenizer
