// `tidegate submit` and `tidegate results`: the command-line ends of the async path.
//
// submit: JSONL (llm-d-async messages, OpenAI Batch API lines or bare OpenAI bodies) →
// async::BuildRequestMessage → queue Publish, one message per non-blank line, in file order.
// A publish is retried (kPublishAttempts, doubling back-off) before the command gives up.
//
// results: queue Pull → async::ParseResultMessage → one normalized JSON line per distinct id.
// Output is flushed (and fsync'ed for --out) before the batch is acknowledged, so a result is
// never acked without having been written (at-least-once: a crash in between redelivers it).
// With --keep, messages stay leased (extended) for the whole run and are nacked at the end, so
// a drain does not see the same message twice.
// Not a hot path; single-threaded.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "async/message.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "common/units.h"
#include "queue/queue.h"

namespace tidegate::cli {
namespace {

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

constexpr int kPublishAttempts = 4;              // then submit stops with exit code 1
constexpr milliseconds kPublishBackoff{100};     // 100, 200, 400 ms between attempts
constexpr milliseconds kProgressInterval{1000};  // submit's "submitted N/M" on stderr
constexpr int kPullBatch = 100;
constexpr milliseconds kResultsLease{60000};
constexpr int kPullAttempts = 3;  // consecutive failed pulls before results gives up

std::string Plural(uint64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

bool IsBlank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
  });
}

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};

// Reads one line (without its '\n' and a trailing '\r') with POSIX getline. False at EOF.
class LineReader {
 public:
  explicit LineReader(FILE* f) : f_(f) {}
  ~LineReader() { free(buf_); }
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;
  bool Next(std::string_view* line) {
    ssize_t n = getline(&buf_, &cap_, f_);
    if (n < 0) return false;
    size_t len = static_cast<size_t>(n);
    if (len > 0 && buf_[len - 1] == '\n') --len;
    if (len > 0 && buf_[len - 1] == '\r') --len;
    *line = std::string_view(buf_, len);
    return true;
  }

 private:
  FILE* f_;
  char* buf_ = nullptr;
  size_t cap_ = 0;
};

// Something safe to put in a message id: [A-Za-z0-9._-], others become '_'; at most 64 bytes.
std::string IdSafe(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64)) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    out.push_back(ok ? c : '_');
  }
  return out;
}

// "<file stem>-<UTC yyyymmddThhmmssZ>-<4 random hex digits>", e.g. "batch-20250102T030405Z-9f3a":
// two submits of the same file (even within one second) get different ids.
std::string DefaultIdPrefix(const std::string& input_name) {
  std::string stem = "stdin";
  if (input_name != "-") {
    std::string base = input_name.substr(input_name.find_last_of('/') + 1);
    if (auto dot = base.find('.'); dot != std::string::npos && dot > 0) base.resize(dot);
    if (!base.empty()) stem = IdSafe(base);
  }
  std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  std::random_device rd;
  char rnd[8];
  std::snprintf(rnd, sizeof rnd, "%04x", static_cast<unsigned>(rd() & 0xffff));
  return stem + "-" + stamp + "-" + rnd;
}

// Publishes `batch` (resuming after what a failed attempt already published), retrying with
// back-off. *published counts the messages of the batch that made it.
queue::Status PublishWithRetry(queue::Queue& q, const std::vector<std::string>& batch,
                               size_t* published) {
  queue::Status st;
  *published = 0;
  milliseconds backoff = kPublishBackoff;
  for (int attempt = 1; attempt <= kPublishAttempts; ++attempt) {
    std::vector<std::string> rest(batch.begin() + static_cast<std::ptrdiff_t>(*published),
                                  batch.end());
    size_t n = 0;
    st = q.PublishBatch(rest, &n);
    *published += n;
    if (st.ok) return st;
    if (attempt < kPublishAttempts) {
      std::this_thread::sleep_for(backoff);
      backoff *= 2;
    }
  }
  return st;
}

// Printable excerpt of a message body for error lines: control bytes escaped, cut at `max`.
std::string Excerpt(std::string_view data, size_t max = 200) {
  std::string out;
  for (size_t i = 0; i < data.size() && i < max; ++i) {
    unsigned char c = static_cast<unsigned char>(data[i]);
    if (c < 0x20 || c == 0x7f) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\x%02x", c);
      out += esc;
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  if (data.size() > max) out += "...";
  return out;
}

}  // namespace

int RunSubmit(const std::vector<std::string>& args) {
  const char* cmd = "tidegate submit";
  std::string uri, id_prefix;
  bool raw = false;
  milliseconds deadline{3'600'000};
  FlagSet flags(
      cmd,
      "tidegate submit --queue URI [flags] [FILE.jsonl | -]\n\n"
      "Publishes requests for the async processor: one per non-blank line of FILE (or of stdin\n"
      "when FILE is '-' or absent). A line is an llm-d-async request message\n"
      "({\"id\",\"payload\",\"deadline\",...}), an OpenAI Batch API line\n"
      "({\"custom_id\",\"method\",\"url\",\"body\"}) or a bare OpenAI request body\n"
      "({\"model\",\"messages\",...}); each is published as a normalized llm-d-async message. A\n"
      "line without an id gets <id-prefix>-<line number>; one without created/deadline gets now\n"
      "and now + --deadline. An invalid line is reported on stderr with its line number and\n"
      "not published; the valid lines are still published, and the exit code is 1. A publish\n"
      "is retried " +
          std::to_string(kPublishAttempts - 1) +
          " times with back-off; if it still fails, submit stops (exit 1) and says how many\n"
          "were published. Progress goes to stderr every second, the summary to stdout.\n"
          "Exit codes: 0 all published, 1 invalid lines or a publish failure, 2 usage error\n"
          "(bad flag, unreadable FILE, queue that cannot be opened).\n\n"
          "example: tidegate submit --queue 'sqlite:///var/lib/tidegate/q.db?queue=requests' "
          "--deadline 6h batch.jsonl");
  flags.Add("queue", "URI",
            "queue to publish to: sqlite:///PATH?queue=NAME or pubsub://projects/P/topics/T "
            "(required)",
            "none", [&](const std::string& v) {
              uri = v;
              return std::string();
            });
  flags.Add("deadline", "DUR",
            "deadline of requests that carry none, from the time each is submitted (at least 1s)",
            FormatDuration(deadline), [&](const std::string& v) -> std::string {
              auto d = ParseDuration(v);
              if (!d) return "expected a duration such as 30m, 6h or 3600s";
              if (*d < std::chrono::seconds(1) || *d > std::chrono::hours(24 * 366 * 10))
                return "expected a duration from 1s to 10 years";
              deadline = *d;
              return {};
            });
  flags.AddSwitch("raw",
                  "publish every non-blank line verbatim, without validation or normalization "
                  "(to replay messages, or to test how a consumer handles malformed ones)",
                  [&] { raw = true; });
  flags.Add("id-prefix", "P", "ids of lines without one become P-<line number>",
            "<file name>-<UTC time>-<random>, e.g. batch-20250102T030405Z-9f3a",
            [&](const std::string& v) -> std::string {
              if (v.empty()) return "must not be empty";
              if (v.size() > 400) return "longer than 400 bytes";
              for (unsigned char c : v)
                if (c < 0x20 || c == 0x7f) return "contains a control character";
              id_prefix = v;
              return {};
            });

  if (auto err = flags.Parse(args)) {
    std::cerr << cmd << ": " << *err << "\n";
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return 0;
  }
  if (flags.positional().size() > 1) {
    std::cerr << cmd << ": expected at most one FILE, got '" << flags.positional()[0] << "' and '"
              << flags.positional()[1] << "' (see " << cmd << " --help)\n";
    return 2;
  }
  if (uri.empty()) {
    std::cerr << cmd << ": --queue is required (see " << cmd << " --help)\n";
    return 2;
  }
  const std::string input = flags.positional().empty() ? "-" : flags.positional()[0];
  const std::string input_name = input == "-" ? "<stdin>" : input;

  // The input first: an unreadable file is a usage error before anything is published.
  FILE* in = stdin;
  std::unique_ptr<FILE, FileCloser> owned;
  uint64_t total = 0;  // non-blank lines, when the input is a regular file; 0 = unknown
  if (input != "-") {
    struct stat sb {};
    if (stat(input.c_str(), &sb) != 0) {
      std::cerr << cmd << ": cannot read " << input << ": " << std::strerror(errno) << "\n";
      return 2;
    }
    if (S_ISDIR(sb.st_mode)) {
      std::cerr << cmd << ": cannot read " << input << ": is a directory\n";
      return 2;
    }
    owned.reset(std::fopen(input.c_str(), "rb"));
    if (!owned) {
      std::cerr << cmd << ": cannot read " << input << ": " << std::strerror(errno) << "\n";
      return 2;
    }
    in = owned.get();
    if (S_ISREG(sb.st_mode)) {
      LineReader counter(in);
      std::string_view line;
      while (counter.Next(&line))
        if (!IsBlank(line)) ++total;
      if (std::ferror(in) || std::fseek(in, 0, SEEK_SET) != 0) {
        std::cerr << cmd << ": cannot read " << input << ": " << std::strerror(errno) << "\n";
        return 2;
      }
    }
  } else if (isatty(STDIN_FILENO)) {
    std::cerr << cmd << ": reading JSONL from the terminal (end with Ctrl-D; see --help)\n";
  }

  std::string open_error;
  auto q = queue::OpenQueue(uri, &open_error);
  if (!q) {
    std::cerr << cmd << ": cannot open queue " << queue::RedactUri(uri) << ": " << open_error
              << "\n";
    return 2;
  }
  const bool default_prefix = id_prefix.empty();
  if (default_prefix) id_prefix = DefaultIdPrefix(input);

  uint64_t line_no = 0, published = 0, invalid = 0, generated_ids = 0;
  std::unordered_map<std::string, uint64_t> first_line_of_id;
  auto last_progress = SteadyClock::now();
  auto progress = [&] {
    std::cerr << cmd << ": submitted " << published;
    if (total > 0) std::cerr << "/" << total;
    if (invalid > 0) std::cerr << " (" << Plural(invalid, "invalid line", "invalid lines") << ")";
    std::cerr << "\n";
  };

  // Lines are published in batches (one transaction and one fsync per batch for the embedded
  // queue), in file order.
  constexpr size_t kBatchSize = 256;
  std::vector<std::string> batch;
  std::vector<uint64_t> batch_lines;
  auto flush = [&]() -> bool {
    if (batch.empty()) return true;
    size_t n = 0;
    queue::Status st = PublishWithRetry(*q, batch, &n);
    published += n;
    if (!st.ok) {
      uint64_t failed_line = batch_lines[n];
      std::cerr << cmd << ": " << input_name << ":" << failed_line << ": publish to "
                << queue::RedactUri(uri) << " failed after " << kPublishAttempts
                << " attempts: " << st.error << "\n"
                << cmd << ": stopped: " << Plural(published, "request was", "requests were")
                << " published (from lines before " << failed_line << "); line " << failed_line
                << " and the rest were not\n";
      return false;
    }
    batch.clear();
    batch_lines.clear();
    return true;
  };

  LineReader reader(in);
  std::string_view line;
  std::string message, id, error;
  while (reader.Next(&line)) {
    ++line_no;
    if (line_no == 1 && line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);  // UTF-8 BOM
    if (IsBlank(line)) continue;
    const std::string fallback_id = id_prefix + "-" + std::to_string(line_no);
    message.clear();
    id.clear();
    error.clear();
    if (raw) {
      message.assign(line);
      id = fallback_id;
    } else if (!async::BuildRequestMessage(line, std::chrono::system_clock::now(),
                                           std::chrono::ceil<std::chrono::seconds>(deadline),
                                           fallback_id, &message, &id, &error)) {
      ++invalid;
      std::cerr << cmd << ": " << input_name << ":" << line_no
                << ": invalid line, not published: " << error << "\n";
      continue;
    }
    if (!raw && id == fallback_id) ++generated_ids;
    auto [it, inserted] = first_line_of_id.emplace(id, line_no);
    if (!inserted) {
      std::cerr << cmd << ": warning: " << input_name << ":" << line_no << ": id \"" << id
                << "\" is also used on line " << it->second
                << " (both published; their results will carry the same id)\n";
    }
    batch.push_back(message);
    batch_lines.push_back(line_no);
    if (batch.size() >= kBatchSize && !flush()) return 1;
    if (auto now = SteadyClock::now(); now - last_progress >= kProgressInterval) {
      last_progress = now;
      progress();
    }
  }
  if (!flush()) return 1;
  if (std::ferror(in)) {
    std::cerr << cmd << ": error reading " << input_name << " after line " << line_no << ": "
              << std::strerror(errno) << "; " << Plural(published, "request was", "requests were")
              << " published\n";
    return 1;
  }
  if (generated_ids > 0) {
    std::cerr << cmd << ": " << Plural(generated_ids, "line had", "lines had")
              << " no id; they got " << id_prefix << "-<line number>\n";
  }
  std::cout << "submitted " << Plural(published, "request", "requests") << " to "
            << queue::RedactUri(uri) << " (" << Plural(invalid, "invalid line", "invalid lines")
            << ")" << std::endl;
  if (invalid > 0) {
    std::cerr << cmd << ": " << Plural(invalid, "invalid line was", "invalid lines were")
              << " not published (see above); the "
              << Plural(published, "valid request was", "valid requests were") << " published\n";
    return 1;
  }
  return 0;
}

int RunResults(const std::vector<std::string>& args) {
  const char* cmd = "tidegate results";
  std::string uri, out_path;
  long long wait_n = 0;
  milliseconds timeout{600'000};
  bool keep = false;
  FlagSet flags(
      cmd,
      "tidegate results --queue URI [--wait N] [--timeout DUR] [--out FILE] [--keep]\n\n"
      "Pulls result messages ({\"id\",\"status_code\",\"payload\",\"error_code\",...}) from a\n"
      "queue and prints each as one JSON line (normalized) on stdout, or appends it to --out.\n"
      "Every distinct id is printed once: a later copy that is identical counts as a duplicate,\n"
      "one that differs as a conflicting duplicate (reported on stderr; the first is kept).\n"
      "Printed results are acknowledged (removed from the queue) after they were written; with\n"
      "--keep they are handed back (nacked) at the end instead and stay in the queue. A message\n"
      "that is not a result message is reported on stderr with the reason, counted as\n"
      "malformed, and acknowledged too (dropped) so that it cannot come back forever (with\n"
      "--keep it stays). With --wait N, pulls until N distinct results were printed; without\n"
      "it, prints what is in the queue now (it stops at the first pull that comes back empty).\n"
      "A summary goes to stderr at the end, e.g.\n"
      "  results: 500 (succeeded 497, failed 3: DEADLINE_EXCEEDED 2, INVALID_REQUEST 1), "
      "duplicates 0, conflicting duplicates 0, malformed 0\n"
      "(succeeded = no error_code and a 2xx status_code). If interrupted, results that were not\n"
      "acknowledged yet are delivered again after their lease (" +
          FormatDuration(kResultsLease) +
          ").\n"
          "Exit codes: 0 --wait reached or the queue drained, 1 --timeout (or a queue or output\n"
          "failure) first, 2 usage error.\n\n"
          "example: tidegate results --queue 'sqlite:///var/lib/tidegate/q.db?queue=results' "
          "--wait 500 --out results.jsonl");
  flags.Add("queue", "URI",
            "queue to pull from: sqlite:///PATH?queue=NAME or "
            "pubsub://projects/P/subscriptions/S (required)",
            "none", [&](const std::string& v) {
              uri = v;
              return std::string();
            });
  flags.Add("wait", "N", "keep pulling until N distinct results were printed (0 = drain)", "0",
            IntSetter(&wait_n, 0, 1'000'000'000'000LL));
  flags.Add("timeout", "DUR", "give up after this long (exit 1)", FormatDuration(timeout),
            [&](const std::string& v) -> std::string {
              auto d = ParseDuration(v);
              if (!d || d->count() <= 0) return "expected a positive duration such as 300ms or 10m";
              timeout = *d;
              return {};
            });
  flags.Add("out", "FILE", "append the results to FILE (created if missing) instead of stdout",
            "stdout", [&](const std::string& v) -> std::string {
              if (v.empty()) return "must not be empty";
              out_path = v;
              return {};
            });
  flags.AddSwitch("keep", "leave the results in the queue (nack them at the end instead of acking)",
                  [&] { keep = true; });

  if (auto code = ParseCommandLine(flags, args)) return *code;
  if (uri.empty()) {
    std::cerr << cmd << ": --queue is required (see " << cmd << " --help)\n";
    return 2;
  }
  FILE* out = stdout;
  std::unique_ptr<FILE, FileCloser> owned;
  if (!out_path.empty()) {
    owned.reset(std::fopen(out_path.c_str(), "ab"));
    if (!owned) {
      std::cerr << cmd << ": cannot open --out " << out_path << ": " << std::strerror(errno)
                << "\n";
      return 2;
    }
    out = owned.get();
  }
  std::string open_error;
  auto q = queue::OpenQueue(uri, &open_error);
  if (!q) {
    std::cerr << cmd << ": cannot open queue " << queue::RedactUri(uri) << ": " << open_error
              << "\n";
    return 2;
  }
  // Pub/Sub's returnImmediately pulls can come back empty while messages exist: wait longer.
  const milliseconds drain_wait{q->kind() == "pubsub" ? 2000 : 250};

  struct Seen {
    size_t hash;
    int status_code;
    async::ErrorCode error_code;
  };
  std::unordered_map<std::string, Seen> seen;
  uint64_t printed = 0, succeeded = 0, duplicates = 0, conflicting = 0, malformed = 0;
  std::map<std::string, uint64_t> failures;  // "DEADLINE_EXCEEDED" or "HTTP 503" → count
  std::vector<std::string> held;             // --keep: leased until the end
  auto last_extend = SteadyClock::now();
  const auto start = SteadyClock::now();
  const auto deadline = start + timeout;
  int exit_code = 0;
  bool timed_out = false;
  int failed_pulls = 0;
  auto describe = [](int status, async::ErrorCode code) {
    std::string s = "status " + std::to_string(status);
    if (code != async::ErrorCode::kNone) s += " " + std::string(async::ErrorCodeName(code));
    return s;
  };

  std::vector<queue::Message> batch;
  while (true) {
    if (wait_n > 0 && printed >= static_cast<uint64_t>(wait_n)) break;
    auto now = SteadyClock::now();
    if (now >= deadline) {
      timed_out = true;
      break;
    }
    if (keep && !held.empty() && now - last_extend >= kResultsLease / 3) {
      if (auto st = q->Extend(held, kResultsLease); !st.ok)
        std::cerr << cmd << ": warning: extending leases: " << st.error << "\n";
      last_extend = now;
    }
    auto left = std::chrono::duration_cast<milliseconds>(deadline - now);
    milliseconds pull_wait = std::min(left, wait_n > 0 ? milliseconds(1000) : drain_wait);
    int max = kPullBatch;
    if (wait_n > 0) max = static_cast<int>(std::min<long long>(max, wait_n - printed));
    queue::Status st = q->Pull(max, kResultsLease, pull_wait, &batch);
    if (!st.ok) {
      if (++failed_pulls >= kPullAttempts) {
        std::cerr << cmd << ": pull from " << queue::RedactUri(uri) << " failed " << failed_pulls
                  << " times in a row: " << st.error << "\n";
        exit_code = 1;
        break;
      }
      std::this_thread::sleep_for(milliseconds(200) * failed_pulls);
      continue;
    }
    failed_pulls = 0;
    if (batch.empty()) {
      if (wait_n == 0) break;  // drained
      continue;
    }
    std::vector<std::string> ack_ids;
    for (const auto& m : batch) {
      ack_ids.push_back(m.ack_id);
      async::Result r;
      std::string error;
      if (!async::ParseResultMessage(m.data, &r, &error)) {
        ++malformed;
        std::cerr << cmd << ": malformed message " << m.id << " (" << error << "), "
                  << (keep ? "left in the queue" : "acknowledged and dropped") << ": "
                  << Excerpt(m.data) << "\n";
        continue;
      }
      std::string rendered = async::RenderResultMessage(r);
      Seen s{std::hash<std::string>{}(rendered), r.status_code, r.error_code};
      auto [it, inserted] = seen.emplace(r.id, s);
      if (!inserted) {
        if (it->second.hash == s.hash) {
          ++duplicates;
        } else {
          ++conflicting;
          std::cerr << cmd << ": conflicting duplicate: result \"" << r.id
                    << "\" arrived again with different content ("
                    << describe(s.status_code, s.error_code) << "; the printed one: "
                    << describe(it->second.status_code, it->second.error_code)
                    << "); kept the first\n";
        }
        continue;
      }
      rendered.push_back('\n');
      std::fwrite(rendered.data(), 1, rendered.size(), out);
      ++printed;
      if (r.error_code == async::ErrorCode::kNone && r.status_code >= 200 && r.status_code < 300) {
        ++succeeded;
      } else if (r.error_code != async::ErrorCode::kNone) {
        ++failures[std::string(async::ErrorCodeName(r.error_code))];
      } else {
        ++failures["HTTP " + std::to_string(r.status_code)];
      }
    }
    // Written (and on disk, for --out) before acknowledged.
    bool write_ok = std::fflush(out) == 0 && !std::ferror(out);
    if (write_ok && owned) write_ok = fsync(fileno(out)) == 0 || errno == EINVAL;
    if (!write_ok) {
      std::cerr << cmd << ": writing " << (owned ? out_path : "stdout")
                << " failed: " << std::strerror(errno)
                << "; the last batch was not acknowledged and will be delivered again\n";
      q->Nack(ack_ids);
      exit_code = 1;
      break;
    }
    if (keep) {
      held.insert(held.end(), ack_ids.begin(), ack_ids.end());
    } else if (auto ack = q->Ack(ack_ids); !ack.ok) {
      std::cerr << cmd << ": acknowledging " << ack_ids.size() << " messages failed: " << ack.error
                << "; they were printed and will be delivered again\n";
      exit_code = 1;
      break;
    }
  }
  if (keep && !held.empty()) {
    if (auto st = q->Nack(held); !st.ok) {
      std::cerr << cmd << ": handing back " << held.size() << " messages failed: " << st.error
                << "; they return to the queue when their lease ends\n";
    }
  }

  std::vector<std::pair<std::string, uint64_t>> by_count(failures.begin(), failures.end());
  std::stable_sort(by_count.begin(), by_count.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  uint64_t failed = printed - succeeded;
  std::string summary = "results: " + std::to_string(printed) + " (succeeded " +
                        std::to_string(succeeded) + ", failed " + std::to_string(failed);
  for (size_t i = 0; i < by_count.size(); ++i)
    summary +=
        (i == 0 ? ": " : ", ") + by_count[i].first + " " + std::to_string(by_count[i].second);
  summary += "), duplicates " + std::to_string(duplicates) + ", conflicting duplicates " +
             std::to_string(conflicting) + ", malformed " + std::to_string(malformed);
  if (timed_out && exit_code == 0) {
    exit_code = 1;
    if (wait_n > 0) {
      std::cerr << cmd << ": timed out after " << FormatDuration(timeout) << " with " << printed
                << " of " << wait_n << " results\n";
    } else {
      std::cerr << cmd << ": timed out after " << FormatDuration(timeout)
                << " while draining; the queue may hold more results\n";
    }
  }
  std::cerr << summary << std::endl;
  return exit_code;
}

}  // namespace tidegate::cli
