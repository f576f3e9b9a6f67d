#include "sim/text.h"

#include <algorithm>

namespace tidegate::sim {

int CountTokens(std::string_view text) {
  return std::max<int>(1, static_cast<int>((text.size() + kCharsPerToken - 1) / kCharsPerToken));
}

uint64_t HashBytes(uint64_t seed, std::string_view bytes) {
  // FNV-1a over the bytes, started from the seed, then a 64-bit finaliser (splitmix64).
  uint64_t h = 0xcbf29ce484222325ULL ^ seed;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

std::vector<uint64_t> BlockHashes(std::span<const uint32_t> ids, int block_size, uint64_t seed) {
  std::vector<uint64_t> out;
  if (block_size <= 0) return out;
  const size_t bs = static_cast<size_t>(block_size);
  out.reserve(ids.size() / bs);
  uint64_t h = seed;
  for (size_t off = 0; off + bs <= ids.size(); off += bs) {
    h = HashBytes(h, std::string_view(reinterpret_cast<const char*>(ids.data() + off),
                                      bs * sizeof(uint32_t)));
    out.push_back(h);
  }
  return out;
}

std::string ChatPromptText(const std::vector<std::pair<std::string, std::string>>& messages) {
  std::string out;
  for (const auto& [role, content] : messages) {
    out += role;
    out += ':';
    out += content;
    out += '\n';
  }
  out += "assistant:";
  return out;
}

namespace {
constexpr std::string_view kWords[] = {
    " the",   " tide",  " gate",  " flows", " over", " a",     " quiet", " sea",
    " and",   " light", " of",    " late",  " day",  " falls", " on",    " sand",
    " where", " small", " waves", " fold",  " in",   " slow",  " rows",  " as",
    " gulls", " turn",  " to",    " the",   " wind", " at",    " dusk",  " while"};
}  // namespace

std::string_view FillerToken(uint64_t seed, int index) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(index) + 1;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return kWords[x % (sizeof(kWords) / sizeof(kWords[0]))];
}

namespace {
// The first UTF-8 character boundary at or after byte `off`.
size_t Boundary(std::string_view s, size_t off) {
  while (off < s.size() && (static_cast<unsigned char>(s[off]) & 0xC0) == 0x80) ++off;
  return std::min(off, s.size());
}
}  // namespace

std::string_view EchoToken(std::string_view prompt, int index) {
  size_t off = static_cast<size_t>(index) * kCharsPerToken;
  if (off >= prompt.size()) return {};
  size_t begin = Boundary(prompt, off);
  size_t end = Boundary(prompt, off + kCharsPerToken);
  return prompt.substr(begin, end - begin);
}

}  // namespace tidegate::sim
