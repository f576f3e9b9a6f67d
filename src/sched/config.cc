#include "sched/config.h"

#include <yaml-cpp/yaml.h>

#include <map>

#include "common/units.h"

namespace tidegate::sched {
namespace {

std::string Where(const std::string& path, const YAML::Node& n) {
  auto m = n.Mark();
  if (m.line < 0) return path;
  return path + " (line " + std::to_string(m.line + 1) + ")";
}

std::string ScalarText(const YAML::Node& n) {
  return n && n.IsScalar() ? n.Scalar() : std::string();
}

}  // namespace

std::string ParseSchedulerProfile(const YAML::Node& root, Profile* out, std::string_view want) {
  try {
    if (!root.IsMap())
      return "scheduler config: expected a mapping with plugins and schedulingProfiles";
    const YAML::Node plugins = root["plugins"];
    if (!plugins || !plugins.IsSequence() || plugins.size() == 0)
      return "scheduler config: `plugins` must be a non-empty list";
    std::map<std::string, std::shared_ptr<Plugin>> by_name;
    for (size_t i = 0; i < plugins.size(); ++i) {
      const YAML::Node p = plugins[i];
      std::string path = "plugins[" + std::to_string(i) + "]";
      if (!p.IsMap()) return Where(path, p) + ": expected a mapping with `type`";
      std::string type = ScalarText(p["type"]);
      if (type.empty()) return Where(path, p) + ": missing `type`";
      std::string name = p["name"] ? ScalarText(p["name"]) : type;
      if (name.empty()) return Where(path, p) + ": `name` must be a string";
      Params params;
      if (const YAML::Node ps = p["parameters"]; ps && !ps.IsNull()) {
        if (!ps.IsMap()) return Where(path, ps) + ": `parameters` must be a mapping";
        for (const auto& kv : ps) {
          if (!kv.second.IsScalar())
            return Where(path + ".parameters." + kv.first.as<std::string>(), kv.second) +
                   ": only scalar parameters are supported";
          params.Set(kv.first.as<std::string>(), kv.second.Scalar());
        }
      }
      std::unique_ptr<Plugin> plugin;
      if (auto err = PluginRegistry::Default().Create(type, name, params, &plugin); !err.empty())
        return Where(path, p) + ": " + err;
      if (by_name.count(name)) return Where(path, p) + ": duplicate plugin name \"" + name + "\"";
      by_name[name] = std::shared_ptr<Plugin>(std::move(plugin));
    }

    const YAML::Node profiles = root["schedulingProfiles"];
    if (!profiles || !profiles.IsSequence() || profiles.size() == 0)
      return "scheduler config: `schedulingProfiles` must be a non-empty list";
    YAML::Node chosen;
    bool found = false;
    std::string chosen_path;
    std::string names;
    for (size_t i = 0; i < profiles.size(); ++i) {
      const YAML::Node pr = profiles[i];
      std::string pname = pr.IsMap() ? ScalarText(pr["name"]) : "";
      names += (names.empty() ? "" : ", ") + pname;
      if (!found && ((want.empty() && i == 0) || (!want.empty() && pname == want))) {
        found = true;
        chosen.reset(pr);
        chosen_path = "schedulingProfiles[" + std::to_string(i) + "]";
      }
    }
    if (!found)
      return "scheduler config: no scheduling profile named \"" + std::string(want) +
             "\" (have: " + names + ")";
    if (!chosen.IsMap()) return Where(chosen_path, chosen) + ": expected a mapping";
    Profile profile;
    profile.name = ScalarText(chosen["name"]);
    const YAML::Node refs = chosen["plugins"];
    if (!refs || !refs.IsSequence() || refs.size() == 0)
      return Where(chosen_path, chosen) + ": `plugins` must be a non-empty list";
    for (size_t i = 0; i < refs.size(); ++i) {
      const YAML::Node r = refs[i];
      std::string path = chosen_path + ".plugins[" + std::to_string(i) + "]";
      if (!r.IsMap()) return Where(path, r) + ": expected a mapping with `pluginRef`";
      std::string ref = ScalarText(r["pluginRef"]);
      if (ref.empty()) return Where(path, r) + ": missing `pluginRef`";
      auto it = by_name.find(ref);
      if (it == by_name.end()) return Where(path, r) + ": unknown pluginRef \"" + ref + "\"";
      double weight = 1;
      if (r["weight"]) {
        Params w({{"weight", ScalarText(r["weight"])}});
        if (auto err = w.GetDouble("weight", &weight, 0, 1e9); !err.empty())
          return Where(path, r) + ": " + err;
      }
      std::shared_ptr<Plugin> plugin = it->second;
      switch (plugin->kind()) {
        case PluginKind::kFilter:
          profile.filters.push_back(std::static_pointer_cast<Filter>(plugin));
          break;
        case PluginKind::kScorer:
          profile.scorers.push_back({std::static_pointer_cast<Scorer>(plugin), weight});
          break;
        default:
          break;  // markers (max-score-picker, profile handlers)
      }
    }

    if (const YAML::Node sd = root["saturationDetector"]; sd && !sd.IsNull()) {
      if (!sd.IsMap()) return Where("saturationDetector", sd) + ": expected a mapping";
      Params p;
      for (const auto& kv : sd) {
        if (!kv.second.IsScalar())
          return Where("saturationDetector", kv.second) + ": expected scalars";
        p.Set(kv.first.as<std::string>(), kv.second.Scalar());
      }
      for (const auto& [k, v] : p.values())
        if (k != "queueDepthThreshold" && k != "kvCacheUtilThreshold" &&
            k != "metricsStalenessThreshold")
          return "saturationDetector: unknown key \"" + k +
                 "\" (known: queueDepthThreshold, kvCacheUtilThreshold, "
                 "metricsStalenessThreshold)";
      if (p.Has("queueDepthThreshold")) {
        double v = 0;
        if (auto e = p.GetDouble("queueDepthThreshold", &v, 1e-9); !e.empty())
          return "saturationDetector: " + e;
        profile.saturation.queue_threshold = v;
      }
      if (p.Has("kvCacheUtilThreshold")) {
        double v = 0;
        if (auto e = p.GetDouble("kvCacheUtilThreshold", &v, 1e-9, 1); !e.empty())
          return "saturationDetector: " + e;
        profile.saturation.kv_threshold = v;
      }
      if (p.Has("metricsStalenessThreshold")) {
        const std::string& t = p.values().at("metricsStalenessThreshold");
        auto d = ParseDuration(t);
        if (!d || d->count() <= 0)
          return "saturationDetector: metricsStalenessThreshold: \"" + t +
                 "\" is not a positive duration (e.g. 2s, 500ms)";
        profile.saturation.stale_after = Nanos(*d);
      }
    }
    if (auto err = BindProfile(profile); !err.empty()) return chosen_path + ": " + err;
    *out = std::move(profile);
    return {};
  } catch (const YAML::Exception& e) {
    return std::string("scheduler config: ") + e.what();
  }
}

std::string ParseSchedulerConfig(const YAML::Node& root, std::unique_ptr<Picker>* out,
                                 std::string_view want,
                                 std::shared_ptr<const pool::SaturationDetector> detector) {
  Profile profile;
  if (auto err = ParseSchedulerProfile(root, &profile, want); !err.empty()) return err;
  profile.detector = std::move(detector);
  std::string name = profile.name.empty() ? "config" : profile.name;
  *out = MakeProfilePicker(std::move(profile), std::move(name));
  return {};
}

std::string ParseSchedulerConfig(std::string_view yaml_text, std::unique_ptr<Picker>* out,
                                 std::string_view want,
                                 std::shared_ptr<const pool::SaturationDetector> detector) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return std::string("scheduler config: ") + e.what();
  }
  return ParseSchedulerConfig(root, out, want, std::move(detector));
}

}  // namespace tidegate::sched
