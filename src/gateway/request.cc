#include "gateway/request.h"

#include <simdjson.h>

namespace tidegate::gateway {

BodyInfo InspectBody(std::string& body, bool require_model) {
  BodyInfo info;
  if (body.empty()) {
    info.error = "the request body is empty; expected a JSON object";
    info.code = "invalid_json";
    return info;
  }
  thread_local simdjson::dom::parser parser;
  if (body.capacity() < body.size() + simdjson::SIMDJSON_PADDING)
    body.reserve(body.size() + simdjson::SIMDJSON_PADDING);
  simdjson::dom::element doc;
  auto err = parser.parse(body.data(), body.size(), false).get(doc);
  if (err) {
    info.error = std::string("the request body is not valid JSON: ") + simdjson::error_message(err);
    info.code = "invalid_json";
    return info;
  }
  simdjson::dom::object obj;
  if (doc.get_object().get(obj)) {
    info.error = "the request body must be a JSON object";
    info.code = "invalid_json";
    return info;
  }
  std::string_view model;
  auto m = obj["model"];
  if (m.error() || m.get_string().get(model) || model.empty()) {
    if (require_model) {
      info.error = "you must provide a model parameter (a non-empty string)";
      info.code = "missing_model";
      return info;
    }
  } else {
    info.model.assign(model);
  }
  bool stream = false;
  auto s = obj["stream"];
  if (!s.error()) {
    if (s.get_bool().get(stream)) {
      if (!s.is_null()) {
        info.error = "'stream' must be a boolean";
        info.code = "invalid_type";
        return info;
      }
    }
  }
  info.stream = stream;
  return info;
}

}  // namespace tidegate::gateway
