#include "tokenizer/chat_template.h"

namespace tidegate::tokenizer {
namespace {

constexpr std::string_view kLlama3Body =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim "
    "+ '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif "
    "%}{{ content }}{% endfor %}";
constexpr std::string_view kLlama3GenAlways =
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}";
constexpr std::string_view kLlama3GenIfAsked =
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% "
    "endif %}";

// Decodes one UTF-8 codepoint at s[i] (sets *len); invalid bytes decode as themselves, len 1.
uint32_t DecodeAt(std::string_view s, size_t i, size_t* len) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > s.size()) {
    *len = 1;
    return 0xFFFFFFFF;
  }
  uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < n; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) {
      *len = 1;
      return 0xFFFFFFFF;
    }
    cp = (cp << 6) | (cc & 0x3F);
  }
  *len = n;
  return cp;
}

// Python's str.isspace().
bool PySpace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

void AppendMessage(std::string* out, const ChatMessage& m) {
  out->append("<|start_header_id|>");
  out->append(m.role);
  out->append("<|end_header_id|>\n\n");
  out->append(PyStrip(m.content));
  out->append("<|eot_id|>");
}

}  // namespace

std::string_view PyStrip(std::string_view s) {
  size_t b = 0, len = 0;
  while (b < s.size()) {
    const uint32_t cp = DecodeAt(s, b, &len);
    if (!PySpace(cp)) break;
    b += len;
  }
  size_t e = s.size();
  while (e > b) {
    size_t start = e - 1;  // back up to the start of the last character
    while (start > b && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80 && e - start < 4)
      --start;
    const uint32_t cp = DecodeAt(s, start, &len);
    if (start + len != e || !PySpace(cp)) break;
    e = start;
  }
  return s.substr(b, e - b);
}

ChatTemplate ChatTemplate::Detect(std::string_view jinja, std::string bos_token) {
  ChatTemplate t;
  t.bos_ = std::move(bos_token);
  if (jinja.empty()) return t;
  if (jinja.size() == kLlama3Body.size() + kLlama3GenAlways.size() &&
      jinja.starts_with(kLlama3Body) && jinja.ends_with(kLlama3GenAlways)) {
    t.kind_ = Kind::kLlama3;
    t.generation_prompt_always_ = true;
  } else if (jinja.size() == kLlama3Body.size() + kLlama3GenIfAsked.size() &&
             jinja.starts_with(kLlama3Body) && jinja.ends_with(kLlama3GenIfAsked)) {
    t.kind_ = Kind::kLlama3;
  } else if (jinja.find("Cutting Knowledge Date: December 2023") != std::string_view::npos &&
             jinja.find("<|start_header_id|>") != std::string_view::npos &&
             jinja.find("26 Jul 2024") != std::string_view::npos &&
             jinja.find("strftime_now") == std::string_view::npos) {
    t.kind_ = Kind::kLlama31;
  } else {
    t.kind_ = Kind::kUnsupported;
    t.reason_ =
        "the chat_template is not one tidegate renders (Llama 3 and Llama 3.1 are; see "
        "tokenizer/chat_template.h)";
    return t;
  }
  t.reason_.clear();
  return t;
}

std::optional<std::string> ChatTemplate::Render(const std::vector<ChatMessage>& messages,
                                                bool add_generation_prompt,
                                                std::string* error) const {
  std::string out;
  switch (kind_) {
    case Kind::kNone:
    case Kind::kUnsupported:
      *error = reason_;
      return std::nullopt;
    case Kind::kLlama3:
      for (size_t i = 0; i < messages.size(); ++i) {
        if (i == 0) out.append(bos_);
        AppendMessage(&out, messages[i]);
      }
      break;
    case Kind::kLlama31: {
      size_t first = 0;
      std::string_view system;
      if (!messages.empty() && messages[0].role == "system") {
        system = PyStrip(messages[0].content);
        first = 1;
      }
      out.append(bos_);
      out.append("<|start_header_id|>system<|end_header_id|>\n\n");
      out.append("Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n");
      out.append(system);
      out.append("<|eot_id|>");
      for (size_t i = first; i < messages.size(); ++i) {
        if (messages[i].role == "ipython" || messages[i].role == "tool") {
          *error = "the Llama 3.1 template's \"" + messages[i].role +
                   "\" messages are not rendered by tidegate";
          return std::nullopt;
        }
        AppendMessage(&out, messages[i]);
      }
      break;
    }
  }
  if (add_generation_prompt || generation_prompt_always_)
    out.append("<|start_header_id|>assistant<|end_header_id|>\n\n");
  return out;
}

}  // namespace tidegate::tokenizer
