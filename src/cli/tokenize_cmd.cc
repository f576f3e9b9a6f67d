// `tidegate tokenize`: JSON lines on stdin → one JSON array of token ids per line on stdout, with
// the tokenizer the gateway uses (tokenizer/tokenizer.h). For checking tidegate's ids against
// another tokenizer, and for counting tokens by hand. Single-threaded; not a hot path.
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/flags.h"
#include "tokenizer/tokenizer.h"

namespace tidegate::cli {
namespace {

void PrintIds(const std::vector<int32_t>& ids, std::string* buf) {
  buf->clear();
  buf->push_back('[');
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) buf->push_back(',');
    buf->append(std::to_string(ids[i]));
  }
  buf->append("]\n");
  std::cout << *buf;
}

void PrintError(size_t line, const std::string& what) {
  nlohmann::json e = {{"error", "line " + std::to_string(line) + ": " + what}};
  std::cout << e.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
}

}  // namespace

int RunTokenize(const std::vector<std::string>& args) {
  std::string path;
  bool chat = false, no_bos = false;
  FlagSet flags(
      "tidegate tokenize",
      "Reads JSON lines from stdin and prints, for each, one JSON array of token ids on stdout,\n"
      "as the model's engine would compute them (Hugging Face tokenizer.json, byte-level BPE:\n"
      "Llama 3, Qwen 2.5 style).\n"
      "  text mode:  {\"text\": \"...\"}  → the ids of the text, with the tokenizer's special\n"
      "              tokens around it (BOS when the post-processor or add_bos_token says so)\n"
      "  --chat:     {\"messages\": [{\"role\": ..., \"content\": ...}, ...]}  → the ids of the\n"
      "              chat template's rendering (Llama 3 / 3.1), content a string or an array of\n"
      "              {\"type\":\"text\",\"text\":...} parts; \"add_generation_prompt\" (default "
      "true)\n"
      "              may be given per line\n"
      "Special tokens written in the text (e.g. <|eot_id|>) become their ids. A line that\n"
      "cannot be read prints {\"error\": \"line N: ...\"} instead and the command goes on; blank\n"
      "lines are skipped. Exit 2 if the tokenizer cannot be loaded (the reason on stderr), 1 if\n"
      "any line failed, else 0.\n\n"
      "example: echo '{\"text\":\"Hello world\"}' | tidegate tokenize --tokenizer models/llama3");
  flags.Add("tokenizer", "DIR_OR_FILE",
            "a directory holding tokenizer.json (and tokenizer_config.json), or the tokenizer.json "
            "file itself (tokenizer_config.json is then read from beside it when present)",
            "(required)", [&](const std::string& v) -> std::string {
              if (v.empty()) return "expected a path";
              path = v;
              return {};
            });
  flags.AddSwitch("chat", "read {\"messages\": [...]} lines and render the chat template",
                  [&] { chat = true; });
  flags.AddSwitch("no-bos",
                  "no special tokens around the text (text mode), or no leading BOS (--chat)",
                  [&] { no_bos = true; });
  if (auto err = flags.Parse(args)) {
    std::cerr << "tidegate tokenize: " << *err << "\n";
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return 0;
  }
  if (!flags.positional().empty()) {
    std::cerr << "tidegate tokenize: unexpected argument '" << flags.positional()[0]
              << "' (input is read from stdin; see --help)\n";
    return 2;
  }
  if (path.empty()) {
    std::cerr << "tidegate tokenize: --tokenizer DIR_OR_FILE is required (see --help)\n";
    return 2;
  }
  std::string error;
  auto tok = tokenizer::Tokenizer::Load(path, &error);
  if (!tok) {
    std::cerr << "tidegate tokenize: " << error << "\n";
    return 2;
  }
  if (chat && tok->chat_template().kind() != tokenizer::ChatTemplate::Kind::kLlama3 &&
      tok->chat_template().kind() != tokenizer::ChatTemplate::Kind::kLlama31) {
    std::cerr << "tidegate tokenize: --chat: " << tok->chat_template().reason() << "\n";
    return 2;
  }

  std::ios::sync_with_stdio(false);
  std::string line, buf;
  size_t n = 0;
  bool failed = false;
  std::vector<tokenizer::ChatMessage> messages;
  while (std::getline(std::cin, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      PrintError(n, std::string("not valid JSON: ") + e.what());
      failed = true;
      continue;
    }
    if (!chat) {
      if (!j.is_object() || !j.contains("text") || !j["text"].is_string()) {
        PrintError(n, "expected {\"text\": \"...\"}");
        failed = true;
        continue;
      }
      PrintIds(tok->Encode(j["text"].get_ref<const std::string&>(), !no_bos), &buf);
      continue;
    }
    if (!j.is_object() || !j.contains("messages")) {
      PrintError(n, "expected {\"messages\": [...]}");
      failed = true;
      continue;
    }
    bool gen = true;
    if (j.contains("add_generation_prompt")) {
      if (!j["add_generation_prompt"].is_boolean()) {
        PrintError(n, "\"add_generation_prompt\" must be true or false");
        failed = true;
        continue;
      }
      gen = j["add_generation_prompt"].get<bool>();
    }
    if (!tokenizer::ParseChatMessages(j["messages"], &messages, &error)) {
      PrintError(n, error);
      failed = true;
      continue;
    }
    auto ids = tok->EncodeChat(messages, gen, &error);
    if (!ids) {
      PrintError(n, error);
      failed = true;
      continue;
    }
    if (no_bos && tok->bos_id() && !ids->empty() && ids->front() == *tok->bos_id())
      ids->erase(ids->begin());
    PrintIds(*ids, &buf);
  }
  std::cout.flush();
  return failed ? 1 : 0;
}

}  // namespace tidegate::cli
