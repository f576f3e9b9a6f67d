#include "wire/errors.h"

#include <cstdio>

namespace tidegate::wire {

std::string JsonEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

std::string ErrorBody(std::string_view message, std::string_view type, std::string_view code) {
  std::string out = "{\"error\":{\"message\":\"";
  out += JsonEscape(message);
  out += "\",\"type\":\"";
  out += JsonEscape(type);
  out += "\",\"code\":\"";
  out += JsonEscape(code);
  out += "\"}}";
  return out;
}

std::string ErrorEvent(std::string_view message, std::string_view type, std::string_view code) {
  return "data: " + ErrorBody(message, type, code) + "\n\n";
}

}  // namespace tidegate::wire
