// queue/uri.h — the small pieces of queue-URI parsing that every backend shares.
//
// Contract: PercentDecode() decodes %XX escapes (any case); false on a truncated or non-hex
// escape, or when the result holds a NUL byte (no name, path or credential may). SplitView()
// splits on `sep` into views of `s` (an empty `s` gives one empty part).
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tidegate::queue {

bool PercentDecode(std::string_view in, std::string* out);
std::vector<std::string_view> SplitView(std::string_view s, char sep);

}  // namespace tidegate::queue
