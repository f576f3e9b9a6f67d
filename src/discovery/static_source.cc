// discovery/static_source.cc — a fixed list, reported once at Start() (today's --endpoints).
#include "discovery/builtin.h"
#include "discovery/endpoint_list.h"

namespace tidegate::discovery {
namespace {

class StaticSource final : public Source {
 public:
  explicit StaticSource(std::vector<pool::EndpointConfig> eps) : eps_(std::move(eps)) {}
  const std::string& Type() const override { return type_; }
  std::string Describe() const override {
    return "static list of " + std::to_string(eps_.size()) + " endpoint(s)";
  }
  std::string Start(Sink* sink) override {
    sink->SetEndpoints(eps_);
    sink->SetHealthy(true, "");
    return {};
  }
  void Stop() override {}

 private:
  const std::string type_ = "static";
  std::vector<pool::EndpointConfig> eps_;
};

}  // namespace

std::unique_ptr<Source> MakeStaticSource(const SourceSpec& spec, std::string* error) {
  Params p(spec);
  std::vector<pool::EndpointConfig> eps;
  if (auto err = ParseEndpointText(p.String("endpoints"), &eps); !err.empty()) {
    *error = err;
    return nullptr;
  }
  if (auto err = p.Leftover({"endpoints"}); !err.empty()) {
    *error = err;
    return nullptr;
  }
  return std::make_unique<StaticSource>(std::move(eps));
}

}  // namespace tidegate::discovery
