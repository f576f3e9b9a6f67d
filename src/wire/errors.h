// wire/errors.h — OpenAI-style error bodies (the gateway's and the simulator's).
//
// Contract: ErrorBody() renders {"error":{"message","type","code"}} with the message JSON-escaped;
// every error the gateway produces goes through it so clients always get a parseable body with
// a human-readable message. Pure function; thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace tidegate::wire {

std::string JsonEscape(std::string_view s);
std::string ErrorBody(std::string_view message, std::string_view type, std::string_view code);
// The same error as one SSE event ("data: {...}\n\n"), for failures after streaming began.
std::string ErrorEvent(std::string_view message, std::string_view type, std::string_view code);

}  // namespace tidegate::wire
