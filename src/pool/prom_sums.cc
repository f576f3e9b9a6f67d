#include "pool/prom_sums.h"

#include "pool/prom_text.h"

namespace tidegate::pool {

bool SumPromText(std::string_view text, PromSums* out,
                 std::initializer_list<std::string_view> split) {
  struct Visitor final : PromVisitor {
    PromSums sums;
    std::initializer_list<std::string_view> split;
    bool OnSample(const PromSample& s) override {
      constexpr std::string_view kBucket = "_bucket";
      if (s.name.size() > kBucket.size() && s.name.ends_with(kBucket) && s.HasLabel("le")) {
        double le = 0;
        if (ParsePromValue(s.Label("le"), &le)) {
          std::string family(s.name.substr(0, s.name.size() - kBucket.size()));
          sums.buckets[family][le] += s.value;
        }
      }
      auto it = sums.sums.find(s.name);
      if (it == sums.sums.end()) it = sums.sums.emplace(std::string(s.name), 0).first;
      it->second += s.value;
      for (std::string_view l : split) {
        if (!s.HasLabel(l)) continue;
        std::string key(s.name);
        key.append("{").append(l).append("=\"").append(s.Label(l)).append("\"}");
        sums.sums[key] += s.value;
      }
      return true;
    }
  } v;
  v.split = split;
  if (!ParsePromText(text, v).ok()) return false;
  *out = std::move(v.sums);
  return true;
}

}  // namespace tidegate::pool
