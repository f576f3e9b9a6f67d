// gateway/routes.h — the paths the gateway serves, classified once per request.
//
// Contract: Classify() maps a request path (no query) to a Route; RouteLabel() gives the
// `path` label of the request metrics ("other" for everything but the OpenAI routes). API
// routes are those proxied to a model server.
// Thread-safety: pure functions.
#pragma once

#include <string_view>

namespace tidegate::gateway {

enum class Route {
  kChat,
  kCompletions,
  kEmbeddings,
  kModels,
  kMetrics,
  kHealthz,
  kReadyz,
  kPool,
  kKvBlocks,
  kCapacity,
  kDashboard,
  kDashboardData,
  kOther
};
inline constexpr int kRouteCount = static_cast<int>(Route::kOther) + 1;

inline Route Classify(std::string_view path) {
  if (path == "/v1/chat/completions") return Route::kChat;
  if (path == "/v1/completions") return Route::kCompletions;
  if (path == "/v1/embeddings") return Route::kEmbeddings;
  if (path == "/v1/models") return Route::kModels;
  if (path == "/metrics") return Route::kMetrics;
  if (path == "/healthz") return Route::kHealthz;
  if (path == "/readyz") return Route::kReadyz;
  if (path == "/v1/pool") return Route::kPool;
  if (path == "/v1/pool/kv-blocks") return Route::kKvBlocks;
  if (path == "/v1/capacity") return Route::kCapacity;
  if (path == "/dashboard" || path == "/dashboard/") return Route::kDashboard;
  if (path == "/dashboard/data") return Route::kDashboardData;
  return Route::kOther;
}

inline const char* RouteLabel(Route r) {
  switch (r) {
    case Route::kChat:
      return "/v1/chat/completions";
    case Route::kCompletions:
      return "/v1/completions";
    case Route::kEmbeddings:
      return "/v1/embeddings";
    case Route::kModels:
      return "/v1/models";
    default:
      return "other";
  }
}

// The operator's routes: served on the admin listener (or on the public port with
// --admin-address public), GET and HEAD only.
inline bool IsAdminRoute(Route r) {
  return r == Route::kMetrics || r == Route::kPool || r == Route::kKvBlocks ||
         r == Route::kCapacity || r == Route::kDashboard || r == Route::kDashboardData;
}

inline bool IsApiRoute(Route r) {
  return r == Route::kChat || r == Route::kCompletions || r == Route::kEmbeddings;
}

}  // namespace tidegate::gateway
