#include "tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <nlohmann/json.hpp>

namespace tidegate::tokenizer {
namespace {

// The GPT-2 pattern ByteLevel uses when its use_regex is true.
constexpr std::string_view kByteLevelPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Length of the UTF-8 sequence starting at s[i] (1 for an invalid or truncated one).
size_t CharLen(std::string_view s, size_t i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
  if (i + n > s.size()) return 1;
  for (size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 1;
  return n;
}

}  // namespace

struct Regex::Impl {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Impl() {
    if (code) pcre2_code_free(code);
  }
};

std::unique_ptr<Regex> Regex::Compile(std::string_view pattern, bool literal, std::string* error) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  uint32_t options = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
  options |= literal ? PCRE2_LITERAL : PCRE2_UCP;  // LITERAL allows no UCP (nor needs it)
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   options, &err, &offset, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    *error = "cannot compile the regex at offset " + std::to_string(offset) + ": " +
             reinterpret_cast<const char*>(msg);
    return nullptr;
  }
  std::unique_ptr<Regex> r(new Regex);
  r->impl_ = std::make_unique<Impl>();
  r->impl_->code = code;
  r->impl_->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return r;
}

Regex::~Regex() = default;

bool Regex::ForEachMatch(std::string_view text,
                         const std::function<void(size_t, size_t)>& on_match) const {
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(impl_->code, nullptr);
  if (!md) return false;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  bool ok = true;
  while (pos <= text.size()) {
    int rc = impl_->jit ? pcre2_jit_match(impl_->code, subject, text.size(), pos, 0, md, nullptr)
                        : pcre2_match(impl_->code, subject, text.size(), pos, 0, md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // retry on the interpreter (heap frames)
      rc = pcre2_match(impl_->code, subject, text.size(), pos, PCRE2_NO_JIT, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      ok = false;
      break;
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    if (e > b) {
      on_match(b, e);
      pos = e;
    } else {
      if (b >= text.size()) break;
      pos = b + CharLen(text, b);  // an empty match: step over one character
    }
  }
  pcre2_match_data_free(md);
  return ok;
}

Pretokenizer::~Pretokenizer() = default;

std::unique_ptr<Pretokenizer> Pretokenizer::Build(const nlohmann::json& config,
                                                  std::string* error) {
  std::unique_ptr<Pretokenizer> p(new Pretokenizer);
  if (config.is_null()) return p;
  if (!p->AddStep(config, error)) return nullptr;
  return p;
}

bool Pretokenizer::AddStep(const nlohmann::json& c, std::string* error) {
  if (!c.is_object() || !c.contains("type") || !c["type"].is_string()) {
    *error = "pre_tokenizer: expected an object with a \"type\"";
    return false;
  }
  const std::string type = c["type"];
  if (type == "Sequence") {
    if (!c.contains("pretokenizers") || !c["pretokenizers"].is_array()) {
      *error = "pre_tokenizer Sequence: missing \"pretokenizers\" array";
      return false;
    }
    for (const auto& sub : c["pretokenizers"])
      if (!AddStep(sub, error)) return false;
    return true;
  }
  Step step;
  if (type == "Split") {
    const auto& pat = c.value("pattern", nlohmann::json());
    bool literal;
    std::string text;
    if (pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string()) {
      literal = false;
      text = pat["Regex"];
    } else if (pat.is_object() && pat.contains("String") && pat["String"].is_string()) {
      literal = true;
      text = pat["String"];
    } else {
      *error = "pre_tokenizer Split: \"pattern\" must be {\"Regex\": ...} or {\"String\": ...}";
      return false;
    }
    std::string err;
    step.regex = Regex::Compile(text, literal, &err);
    if (!step.regex) {
      *error = "pre_tokenizer Split: " + err;
      return false;
    }
    const std::string behavior = c.value("behavior", "Isolated");
    if (behavior == "Isolated")
      step.behavior = Behavior::kIsolated;
    else if (behavior == "Removed")
      step.behavior = Behavior::kRemoved;
    else if (behavior == "MergedWithPrevious")
      step.behavior = Behavior::kMergedWithPrevious;
    else if (behavior == "MergedWithNext")
      step.behavior = Behavior::kMergedWithNext;
    else if (behavior == "Contiguous")
      step.behavior = Behavior::kContiguous;
    else {
      *error = "pre_tokenizer Split: unknown behavior \"" + behavior + "\"";
      return false;
    }
    step.invert = c.value("invert", false);
  } else if (type == "ByteLevel") {
    byte_level_ = true;
    step.add_prefix_space = c.value("add_prefix_space", false);
    if (c.value("use_regex", true)) {
      std::string err;
      step.regex = Regex::Compile(kByteLevelPattern, false, &err);
      if (!step.regex) {
        *error = "pre_tokenizer ByteLevel: " + err;
        return false;
      }
    }
  } else {
    *error = "pre_tokenizer type \"" + type +
             "\" is not supported (supported: Sequence, Split, ByteLevel)";
    return false;
  }
  steps_.push_back(std::move(step));
  return true;
}

void Pretokenizer::Split(std::string_view text, const Emit& emit) const { Run(text, 0, emit); }

void Pretokenizer::Run(std::string_view text, size_t step, const Emit& emit) const {
  if (text.empty()) return;
  if (step == steps_.size()) {
    emit(text);
    return;
  }
  const Step& s = steps_[step];
  if (s.add_prefix_space && text.front() != ' ') {
    std::string spaced;
    spaced.reserve(text.size() + 1);
    spaced.push_back(' ');
    spaced.append(text);
    SplitStep(s, spaced, step + 1, emit);
    return;
  }
  SplitStep(s, text, step + 1, emit);
}

void Pretokenizer::SplitStep(const Step& s, std::string_view text, size_t next,
                             const Emit& emit) const {
  if (!s.regex) {
    Run(text, next, emit);
    return;
  }
  // Spans of the text, each a match or a gap; `invert` swaps which is which.
  struct Span {
    size_t b, e;
    bool match;
  };
  std::vector<Span> spans;
  size_t last = 0;
  s.regex->ForEachMatch(text, [&](size_t b, size_t e) {
    if (b > last) spans.push_back({last, b, s.invert});
    spans.push_back({b, e, !s.invert});
    last = e;
  });
  if (last < text.size()) spans.push_back({last, text.size(), s.invert});

  // The folds of tokenizers' SplitDelimiterBehavior, over (begin, end) ranges.
  std::vector<std::pair<size_t, size_t>> pieces;
  pieces.reserve(spans.size());
  switch (s.behavior) {
    case Behavior::kIsolated:
      for (const auto& sp : spans) pieces.emplace_back(sp.b, sp.e);
      break;
    case Behavior::kRemoved:
      for (const auto& sp : spans)
        if (!sp.match) pieces.emplace_back(sp.b, sp.e);
      break;
    case Behavior::kMergedWithPrevious: {  // a match after a gap joins it
      bool previous_match = false;
      for (const auto& sp : spans) {
        if (sp.match && !previous_match && !pieces.empty())
          pieces.back().second = sp.e;
        else
          pieces.emplace_back(sp.b, sp.e);
        previous_match = sp.match;
      }
      break;
    }
    case Behavior::kMergedWithNext: {  // a match before a gap joins it
      bool next_match = false;
      for (size_t i = spans.size(); i-- > 0;) {
        const auto& sp = spans[i];
        if (sp.match && !next_match && !pieces.empty())
          pieces.back().first = sp.b;
        else
          pieces.emplace_back(sp.b, sp.e);
        next_match = sp.match;
      }
      std::reverse(pieces.begin(), pieces.end());
      break;
    }
    case Behavior::kContiguous: {  // runs of matches form one piece
      bool previous_match = false;
      for (const auto& sp : spans) {
        if (sp.match == previous_match && !pieces.empty())
          pieces.back().second = sp.e;
        else
          pieces.emplace_back(sp.b, sp.e);
        previous_match = sp.match;
      }
      break;
    }
  }
  for (const auto& [b, e] : pieces)
    if (e > b) Run(text.substr(b, e - b), next, emit);
}

}  // namespace tidegate::tokenizer
