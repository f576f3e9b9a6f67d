#include "kvevents/events.h"

#include <cstring>
#include <msgpack.hpp>

namespace tidegate::kvevents {
namespace {

// Bounds on what one batch may hold, so a hostile message cannot make the decoder allocate
// without limit (msgpack-cxx checks them while unpacking).
constexpr size_t kMaxArray = 1 << 20;
constexpr size_t kMaxMap = 64;
constexpr size_t kMaxStr = 1 << 16;
constexpr size_t kMaxBin = 1 << 16;
constexpr size_t kMaxDepth = 8;

using Obj = msgpack::object;

struct Fail {
  std::string what;
};

bool AsInt(const Obj& o, int64_t* v) {
  if (o.type == msgpack::type::POSITIVE_INTEGER) {
    if (o.via.u64 > static_cast<uint64_t>(INT64_MAX)) return false;
    *v = static_cast<int64_t>(o.via.u64);
    return true;
  }
  if (o.type == msgpack::type::NEGATIVE_INTEGER) {
    *v = o.via.i64;
    return true;
  }
  return false;
}

bool AsHash(const Obj& o, EngineHash* h) {
  if (o.type == msgpack::type::POSITIVE_INTEGER) {
    *h = o.via.u64;
    return true;
  }
  if (o.type == msgpack::type::NEGATIVE_INTEGER) {
    *h = static_cast<uint64_t>(o.via.i64);
    return true;
  }
  const char* p = nullptr;
  size_t n = 0;
  if (o.type == msgpack::type::BIN) {
    p = o.via.bin.ptr;
    n = o.via.bin.size;
  } else if (o.type == msgpack::type::STR) {
    p = o.via.str.ptr;
    n = o.via.str.size;
  } else {
    return false;
  }
  if (n == 0) return false;
  uint64_t x = 0;
  for (size_t i = 0; i < n && i < 8; ++i) x = (x << 8) | static_cast<unsigned char>(p[i]);
  if (n > 8) {  // fold the rest in (FNV-1a style), so longer digests stay distinct
    for (size_t i = 8; i < n; ++i) {
      x ^= static_cast<unsigned char>(p[i]);
      x *= 0x100000001b3ULL;
    }
  }
  *h = x;
  return true;
}

bool AsString(const Obj& o, std::string* s) {
  if (o.type == msgpack::type::NIL) {
    s->clear();
    return true;
  }
  if (o.type != msgpack::type::STR) return false;
  s->assign(o.via.str.ptr, o.via.str.size);
  return true;
}

bool IsNil(const Obj& o) { return o.type == msgpack::type::NIL; }

void Hashes(const Obj& o, std::vector<EngineHash>* out, const char* field) {
  if (o.type != msgpack::type::ARRAY) throw Fail{std::string(field) + " is not an array"};
  out->reserve(o.via.array.size);
  for (uint32_t i = 0; i < o.via.array.size; ++i) {
    EngineHash h;
    if (!AsHash(o.via.array.ptr[i], &h))
      throw Fail{std::string(field) + "[" + std::to_string(i) + "] is not an integer or bytes"};
    out->push_back(h);
  }
}

// Field setters shared by both encodings: `idx` is the field's position in declaration order.
void SetStored(BlockStored* e, int idx, const Obj& o) {
  int64_t v = 0;
  switch (idx) {
    case 0:
      Hashes(o, &e->block_hashes, "block_hashes");
      return;
    case 1:
      if (IsNil(o)) return;
      {
        EngineHash h;
        if (!AsHash(o, &h)) throw Fail{"parent_block_hash is not an integer, bytes or nil"};
        e->parent_block_hash = h;
      }
      return;
    case 2:
      if (o.type != msgpack::type::ARRAY) throw Fail{"token_ids is not an array"};
      e->token_ids.reserve(o.via.array.size);
      for (uint32_t i = 0; i < o.via.array.size; ++i) {
        if (!AsInt(o.via.array.ptr[i], &v) || v < 0 || v > UINT32_MAX)
          throw Fail{"token_ids[" + std::to_string(i) + "] is not a token id"};
        e->token_ids.push_back(static_cast<uint32_t>(v));
      }
      return;
    case 3:
      if (!AsInt(o, &v) || v <= 0 || v > (1 << 20)) throw Fail{"block_size is not a positive int"};
      e->block_size = v;
      return;
    case 4:
      if (IsNil(o)) return;
      if (!AsInt(o, &v)) throw Fail{"lora_id is not an integer or nil"};
      e->lora_id = v;
      return;
    case 5:
      if (!AsString(o, &e->medium)) throw Fail{"medium is not a string or nil"};
      return;
    case 6:
      if (!AsString(o, &e->lora_name)) throw Fail{"lora_name is not a string or nil"};
      return;
    default:
      return;  // a field added by a newer engine
  }
}

void SetRemoved(BlockRemoved* e, int idx, const Obj& o) {
  if (idx == 0) {
    Hashes(o, &e->block_hashes, "block_hashes");
  } else if (idx == 1) {
    if (!AsString(o, &e->medium)) throw Fail{"medium is not a string or nil"};
  }
}

constexpr const char* kStoredFields[] = {"block_hashes", "parent_block_hash", "token_ids",
                                         "block_size",   "lora_id",           "medium",
                                         "lora_name"};
constexpr const char* kRemovedFields[] = {"block_hashes", "medium"};

int FieldIndex(std::string_view name, const char* const* fields, int n) {
  for (int i = 0; i < n; ++i)
    if (name == fields[i]) return i;
  return -1;
}

enum class Type { kStored, kRemoved, kCleared, kUnknown };
Type TypeOf(std::string_view s) {
  if (s == "BlockStored") return Type::kStored;
  if (s == "BlockRemoved") return Type::kRemoved;
  if (s == "AllBlocksCleared") return Type::kCleared;
  return Type::kUnknown;
}

// Decodes one event; false for an unknown type (skipped).
bool DecodeEvent(const Obj& o, Event* out) {
  if (o.type == msgpack::type::ARRAY) {
    if (o.via.array.size == 0 || o.via.array.ptr[0].type != msgpack::type::STR)
      throw Fail{"the event array does not start with its type name"};
    const Obj& tag = o.via.array.ptr[0];
    switch (TypeOf({tag.via.str.ptr, tag.via.str.size})) {
      case Type::kStored: {
        BlockStored e;
        for (uint32_t i = 1; i < o.via.array.size; ++i)
          SetStored(&e, static_cast<int>(i) - 1, o.via.array.ptr[i]);
        if (o.via.array.size < 5) throw Fail{"BlockStored has fewer than 4 fields"};
        *out = std::move(e);
        return true;
      }
      case Type::kRemoved: {
        BlockRemoved e;
        for (uint32_t i = 1; i < o.via.array.size; ++i)
          SetRemoved(&e, static_cast<int>(i) - 1, o.via.array.ptr[i]);
        if (o.via.array.size < 2) throw Fail{"BlockRemoved has no block_hashes"};
        *out = std::move(e);
        return true;
      }
      case Type::kCleared:
        *out = AllBlocksCleared{};
        return true;
      case Type::kUnknown:
        return false;
    }
  }
  if (o.type == msgpack::type::MAP) {
    const Obj* type = nullptr;
    for (uint32_t i = 0; i < o.via.map.size; ++i) {
      const auto& kv = o.via.map.ptr[i];
      if (kv.key.type == msgpack::type::STR &&
          std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == "type")
        type = &kv.val;
    }
    if (!type || type->type != msgpack::type::STR) throw Fail{"the event map has no \"type\""};
    Type t = TypeOf({type->via.str.ptr, type->via.str.size});
    if (t == Type::kUnknown) return false;
    if (t == Type::kCleared) {
      *out = AllBlocksCleared{};
      return true;
    }
    BlockStored stored;
    BlockRemoved removed;
    bool have_hashes = false, have_size = false;
    for (uint32_t i = 0; i < o.via.map.size; ++i) {
      const auto& kv = o.via.map.ptr[i];
      if (kv.key.type != msgpack::type::STR) throw Fail{"an event map key is not a string"};
      std::string_view key(kv.key.via.str.ptr, kv.key.via.str.size);
      if (t == Type::kStored) {
        int idx = FieldIndex(key, kStoredFields, 7);
        if (idx >= 0) SetStored(&stored, idx, kv.val);
        have_hashes |= idx == 0;
        have_size |= idx == 3;
      } else {
        int idx = FieldIndex(key, kRemovedFields, 2);
        if (idx >= 0) SetRemoved(&removed, idx, kv.val);
        have_hashes |= idx == 0;
      }
    }
    if (!have_hashes) throw Fail{"the event has no block_hashes"};
    if (t == Type::kStored) {
      if (!have_size) throw Fail{"BlockStored has no block_size"};
      *out = std::move(stored);
    } else {
      *out = std::move(removed);
    }
    return true;
  }
  throw Fail{"an event is neither an array nor a map"};
}

template <typename P>
void PackHash(P& pk, EngineHash h, Encoding enc) {
  if (enc == Encoding::kArray) {
    pk.pack_uint64(h);
    return;
  }
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(h >> (56 - 8 * i));
  pk.pack_bin(8);
  pk.pack_bin_body(b, 8);
}

template <typename P>
void PackHashes(P& pk, const std::vector<EngineHash>& hs, Encoding enc) {
  pk.pack_array(static_cast<uint32_t>(hs.size()));
  for (EngineHash h : hs) PackHash(pk, h, enc);
}

template <typename P>
void PackStr(P& pk, std::string_view s) {
  pk.pack_str(static_cast<uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

template <typename P>
void PackStrOrNil(P& pk, const std::string& s) {
  if (s.empty()) {
    pk.pack_nil();
  } else {
    PackStr(pk, s);
  }
}

template <typename P>
void PackStoredFields(P& pk, const BlockStored& e, Encoding enc, bool named) {
  auto key = [&](const char* k) {
    if (named) PackStr(pk, k);
  };
  key("block_hashes");
  PackHashes(pk, e.block_hashes, enc);
  key("parent_block_hash");
  if (e.parent_block_hash) {
    PackHash(pk, *e.parent_block_hash, enc);
  } else {
    pk.pack_nil();
  }
  key("token_ids");
  pk.pack_array(static_cast<uint32_t>(e.token_ids.size()));
  for (uint32_t t : e.token_ids) pk.pack_uint32(t);
  key("block_size");
  pk.pack_int64(e.block_size);
  key("lora_id");
  if (e.lora_id) {
    pk.pack_int64(*e.lora_id);
  } else {
    pk.pack_nil();
  }
  key("medium");
  PackStrOrNil(pk, e.medium);
  key("lora_name");
  PackStrOrNil(pk, e.lora_name);
}

}  // namespace

bool ParseEncoding(std::string_view s, Encoding* out) {
  if (s == "array") {
    *out = Encoding::kArray;
  } else if (s == "map") {
    *out = Encoding::kMap;
  } else {
    return false;
  }
  return true;
}

std::string Encode(const EventBatch& batch, Encoding enc) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_array(3);
  pk.pack_double(batch.ts);
  pk.pack_array(static_cast<uint32_t>(batch.events.size()));
  for (const Event& ev : batch.events) {
    if (const auto* s = std::get_if<BlockStored>(&ev)) {
      if (enc == Encoding::kArray) {
        pk.pack_array(8);
        PackStr(pk, "BlockStored");
      } else {
        pk.pack_map(8);
        PackStr(pk, "type");
        PackStr(pk, "BlockStored");
      }
      PackStoredFields(pk, *s, enc, enc == Encoding::kMap);
    } else if (const auto* r = std::get_if<BlockRemoved>(&ev)) {
      if (enc == Encoding::kArray) {
        pk.pack_array(3);
        PackStr(pk, "BlockRemoved");
      } else {
        pk.pack_map(3);
        PackStr(pk, "type");
        PackStr(pk, "BlockRemoved");
        PackStr(pk, "block_hashes");
      }
      PackHashes(pk, r->block_hashes, enc);
      if (enc == Encoding::kMap) PackStr(pk, "medium");
      PackStrOrNil(pk, r->medium);
    } else {
      if (enc == Encoding::kArray) {
        pk.pack_array(1);
      } else {
        pk.pack_map(1);
        PackStr(pk, "type");
      }
      PackStr(pk, "AllBlocksCleared");
    }
  }
  if (batch.data_parallel_rank) {
    pk.pack_int64(*batch.data_parallel_rank);
  } else {
    pk.pack_nil();
  }
  return std::string(buf.data(), buf.size());
}

bool Decode(std::string_view bytes, EventBatch* out, std::string* error) {
  *out = EventBatch{};
  try {
    msgpack::unpack_limit limit(kMaxArray, kMaxMap, kMaxStr, kMaxBin, 0, kMaxDepth);
    size_t off = 0;
    msgpack::object_handle oh =
        msgpack::unpack(bytes.data(), bytes.size(), off, nullptr, nullptr, limit);
    if (off != bytes.size()) throw Fail{"trailing bytes after the batch"};
    const Obj& root = oh.get();
    if (root.type != msgpack::type::ARRAY || root.via.array.size < 2)
      throw Fail{"the batch is not an array [ts, events, data_parallel_rank]"};
    const Obj& ts = root.via.array.ptr[0];
    if (ts.type == msgpack::type::FLOAT64 || ts.type == msgpack::type::FLOAT32) {
      out->ts = ts.via.f64;
    } else if (int64_t v; AsInt(ts, &v)) {
      out->ts = static_cast<double>(v);
    } else {
      throw Fail{"the batch's ts is not a number"};
    }
    const Obj& events = root.via.array.ptr[1];
    if (events.type != msgpack::type::ARRAY) throw Fail{"the batch's events are not an array"};
    out->events.reserve(events.via.array.size);
    for (uint32_t i = 0; i < events.via.array.size; ++i) {
      Event ev;
      try {
        if (DecodeEvent(events.via.array.ptr[i], &ev)) {
          out->events.push_back(std::move(ev));
        } else {
          ++out->unknown_events;
        }
      } catch (const Fail& f) {
        throw Fail{"event " + std::to_string(i) + ": " + f.what};
      }
    }
    if (root.via.array.size >= 3 && !IsNil(root.via.array.ptr[2])) {
      int64_t rank;
      if (!AsInt(root.via.array.ptr[2], &rank)) throw Fail{"data_parallel_rank is not an int"};
      out->data_parallel_rank = rank;
    }
    return true;
  } catch (const Fail& f) {
    *error = f.what;
  } catch (const std::exception& e) {
    *error = std::string("not msgpack: ") + e.what();
  }
  *out = EventBatch{};
  return false;
}

bool DecodeSeq(std::string_view frame, int64_t* seq) {
  if (frame.size() != 8) return false;
  uint64_t x = 0;
  for (char c : frame) x = (x << 8) | static_cast<unsigned char>(c);
  *seq = static_cast<int64_t>(x);
  return true;
}

std::string EncodeSeq(int64_t seq) {
  std::string s(8, '\0');
  const uint64_t x = static_cast<uint64_t>(seq);
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(x >> (56 - 8 * i));
  return s;
}

}  // namespace tidegate::kvevents
