// The simulator's engine personalities, read back by the gateway's own parser: each page must
// be recognised as its engine and give back the state it was rendered from.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "pool/engine_metrics.h"
#include "sim/personality.h"

namespace tidegate::sim {
namespace {

EngineState Busy() {
  EngineState s;
  s.model = "meta-llama/Llama-3.1-8B-Instruct";
  s.running = 3;
  s.waiting = 5;
  s.prefilling = 1;
  s.kv_usage = 0.25;
  s.block_size = 16;
  s.num_blocks = 4000;
  s.used_blocks = 1000;
  s.max_num_seqs = 3;
  return s;
}

pool::EndpointMetrics ReadBack(const std::string& page, pool::Engine engine) {
  EXPECT_EQ(pool::DetectEngine(page).engine, engine) << page.substr(0, 300);
  pool::EndpointMetrics m;
  pool::MetricsParse p = pool::ParseEngineMetricsPage(engine, page, Nanos{0}, &m);
  EXPECT_TRUE(p.ok()) << p.error;
  return m;
}

TEST(SimPersonality, SglangWithPriorityAndTensorRanksReadsBackOnce) {
  EngineState s = Busy();
  s.priority_scheduling = true;
  s.running_by_priority = {{0, 1}, {10, 2}};
  s.waiting_by_priority = {{0, 4}, {10, 1}};
  s.tp_size = 2;
  const std::string page = RenderSglangMetrics(s);
  // Six series per count: the total and two priorities, on each of two ranks.
  size_t series = 0;
  for (size_t p = page.find("\nsglang:num_queue_reqs{"); p != std::string::npos;
       p = page.find("\nsglang:num_queue_reqs{", p + 1))
    ++series;
  EXPECT_EQ(series, 6u);
  pool::EndpointMetrics m = ReadBack(page, pool::Engine::kSglang);
  EXPECT_EQ(m.waiting, 5);
  EXPECT_EQ(m.running, 3);
  EXPECT_DOUBLE_EQ(m.kv_usage, 0.25);
  EXPECT_EQ(m.block_size, 16);
  EXPECT_EQ(m.num_gpu_blocks, 4000);
}

TEST(SimPersonality, TrtllmServesJsonAtMetricsAndPrometheusElsewhere) {
  const EngineState s = Busy();
  const std::string json = RenderTrtllmIterationStats(s);
  EXPECT_TRUE(pool::DetectEngine(json).json_stats);
  auto doc = nlohmann::json::parse(json);
  ASSERT_TRUE(doc.is_array());
  EXPECT_EQ(doc[0]["numActiveRequests"], 3);
  EXPECT_EQ(doc[0]["numQueuedRequests"], 5);
  EXPECT_EQ(doc[0]["kvCacheStats"]["usedNumBlocks"], 1000);
  const std::string page = RenderTrtllmPrometheus(s);
  EXPECT_NE(page.find("model_name=\"undefined\""), std::string::npos);
  pool::EndpointMetrics m = ReadBack(page, pool::Engine::kTrtllmServe);
  EXPECT_EQ(m.waiting, 5);
  EXPECT_EQ(m.running, 3);
  EXPECT_DOUBLE_EQ(m.kv_usage, 0.25);
  EXPECT_TRUE(m.models.empty());  // "undefined" is not a model name
}

TEST(SimPersonality, TritonReadsBack) {
  pool::EndpointMetrics m = ReadBack(RenderTritonMetrics(Busy()), pool::Engine::kTritonTrtllm);
  EXPECT_EQ(m.waiting, 5);
  EXPECT_EQ(m.running, 3);
  EXPECT_DOUBLE_EQ(m.kv_usage, 0.25);
  EXPECT_EQ(m.block_size, 16);
  EXPECT_EQ(m.num_gpu_blocks, 4000);
  EXPECT_TRUE(m.models.empty());  // "tensorrt_llm" is Triton's model, not the served one
}

TEST(SimPersonality, LlamaCppReadsBackAndSaysHowToEnableMetrics) {
  pool::EndpointMetrics m = ReadBack(RenderLlamaCppMetrics(Busy()), pool::Engine::kLlamaCpp);
  EXPECT_EQ(m.waiting, 5);
  EXPECT_EQ(m.running, 3);
  EXPECT_FALSE(m.has_kv);
  auto body = nlohmann::json::parse(LlamaCppMetricsDisabledBody());
  EXPECT_EQ(body["error"]["code"], 501);
  EXPECT_NE(body["error"]["message"].get<std::string>().find("--metrics"), std::string::npos);
}

TEST(SimPersonality, Names) {
  for (const auto& n : PersonalityNames()) EXPECT_EQ(PersonalityName(*PersonalityFromName(n)), n);
  EXPECT_FALSE(PersonalityFromName("tgi"));
  EXPECT_EQ(PersonalityOwner(Personality::kTrtllm), "tensorrt_llm");
  EXPECT_EQ(pool::EngineFromOwner(PersonalityOwner(Personality::kTriton)),
            pool::Engine::kTritonTrtllm);
}

}  // namespace
}  // namespace tidegate::sim
