#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "pool/engine_metrics.h"

namespace tidegate::pool {
namespace {

// The realistic samples live in the fuzz seed corpus; find it from this file's path.
std::string Sample(const std::string& name) {
  std::string here = __FILE__;  // <repo>/tests/unit/pool_engine_metrics_test.cc
  std::string repo = here.substr(0, here.rfind("/tests/unit/"));
  std::ifstream in(repo + "/fuzz/corpus/prom_text/" + name, std::ios::binary);
  EXPECT_TRUE(in) << "missing sample " << name;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(EngineMetrics, Vllm) {
  EndpointMetrics m;
  ASSERT_EQ(ParseEngineMetrics("vllm", Sample("vllm.txt"), Nanos{42}, &m), "");
  EXPECT_EQ(m.waiting, 3);
  EXPECT_EQ(m.running, 12);
  EXPECT_DOUBLE_EQ(m.kv_usage, 0.4213);
  EXPECT_TRUE(m.has_kv);
  EXPECT_TRUE(m.has_lora_info);
  EXPECT_EQ(m.max_lora, 4);
  // The series with the latest timestamp value wins.
  EXPECT_EQ(m.running_lora_adapters, (std::vector<std::string>{"sql-lora", "chat-lora"}));
  EXPECT_EQ(m.waiting_lora_adapters, (std::vector<std::string>{"tldr"}));
  EXPECT_EQ(m.block_size, 16);
  EXPECT_EQ(m.num_gpu_blocks, 25000);
  EXPECT_EQ(m.models, (std::vector<std::string>{"meta-llama/Llama-3.1-8B-Instruct"}));
  EXPECT_EQ(m.scrape_time, Nanos{42});
  EXPECT_TRUE(m.AdapterRunning("sql-lora"));
  EXPECT_TRUE(m.AdapterWaiting("tldr"));
}

TEST(EngineMetrics, VllmOlderGpuCacheName) {
  EndpointMetrics m;
  ASSERT_EQ(ParseEngineMetrics(Engine::kVllm, Sample("vllm_old.txt"), Nanos{0}, &m), "");
  EXPECT_EQ(m.running, 4);
  EXPECT_EQ(m.waiting, 0);
  EXPECT_DOUBLE_EQ(m.kv_usage, 0.875);
  EXPECT_FALSE(m.has_lora_info);
}

TEST(EngineMetrics, VllmPrefersNewKvNameAndSumsEngines) {
  EndpointMetrics m;
  ASSERT_EQ(ParseEngineMetrics("vllm",
                               "vllm:gpu_cache_usage_perc 0.9\n"
                               "vllm:kv_cache_usage_perc{engine=\"0\"} 0.2\n"
                               "vllm:kv_cache_usage_perc{engine=\"1\"} 0.3\n"
                               "vllm:num_requests_waiting{engine=\"0\"} 1\n"
                               "vllm:num_requests_waiting{engine=\"1\"} 2\n"
                               "vllm:num_requests_running{engine=\"0\"} 0\n",
                               Nanos{0}, &m),
            "");
  EXPECT_DOUBLE_EQ(m.kv_usage, 0.3);  // max over engines
  EXPECT_EQ(m.waiting, 3);            // sum over engines
}

TEST(EngineMetrics, Sglang) {
  EndpointMetrics m;
  ASSERT_EQ(ParseEngineMetrics("sglang", Sample("sglang.txt"), Nanos{0}, &m), "");
  EXPECT_EQ(m.waiting, 9);
  EXPECT_EQ(m.running, 7);
  EXPECT_DOUBLE_EQ(m.kv_usage, 0.62);
  EXPECT_EQ(m.block_size, 1);
  EXPECT_EQ(m.num_gpu_blocks, 180000);
  EXPECT_EQ(m.models, (std::vector<std::string>{"Qwen/Qwen2.5-7B-Instruct"}));
}

TEST(EngineMetrics, TrtllmServe) {
  EndpointMetrics m;
  ASSERT_EQ(ParseEngineMetrics("trtllm-serve", Sample("trtllm_serve.txt"), Nanos{0}, &m), "");
  EXPECT_EQ(m.waiting, 1);
  EXPECT_EQ(m.running, 5);
  EXPECT_DOUBLE_EQ(m.kv_usage, 0.25);
}

TEST(EngineMetrics, TritonTrtllm) {
  EndpointMetrics m;
  ASSERT_EQ(ParseEngineMetrics("triton-trtllm", Sample("triton_trtllm.txt"), Nanos{0}, &m), "");
  EXPECT_EQ(m.waiting, 2);
  EXPECT_EQ(m.running, 6);  // request_type="scheduled"
  EXPECT_DOUBLE_EQ(m.kv_usage, 0.3);
  EXPECT_EQ(m.models, (std::vector<std::string>{"tensorrt_llm"}));
}

TEST(EngineMetrics, LlamaCpp) {
  EndpointMetrics m;
  ASSERT_EQ(ParseEngineMetrics("llama.cpp", Sample("llamacpp.txt"), Nanos{0}, &m), "");
  EXPECT_EQ(m.waiting, 5);
  EXPECT_EQ(m.running, 2);
  EXPECT_FALSE(m.has_kv);
  EXPECT_EQ(m.kv_usage, 0);
}

TEST(EngineMetrics, ClampsKvAndCounts) {
  EndpointMetrics m;
  ASSERT_EQ(ParseEngineMetrics("sglang",
                               "sglang:num_queue_reqs -1\nsglang:num_running_reqs 0\n"
                               "sglang:token_usage 1.7\n",
                               Nanos{0}, &m),
            "");
  EXPECT_EQ(m.waiting, 0);
  EXPECT_EQ(m.kv_usage, 1);
}

TEST(EngineMetrics, Errors) {
  EndpointMetrics m;
  std::string e = ParseEngineMetrics("tgi", "x 1\n", Nanos{0}, &m);
  EXPECT_NE(e.find("unknown engine \"tgi\""), std::string::npos) << e;
  EXPECT_NE(e.find("vllm, sglang, trtllm-serve, triton-trtllm, llamacpp"), std::string::npos) << e;

  e = ParseEngineMetrics("vllm", "vllm:num_requests_running 1\nvllm:kv_cache_usage_perc 0\n",
                         Nanos{0}, &m);
  EXPECT_EQ(e, "vllm: missing vllm:num_requests_waiting");
  e = ParseEngineMetrics("vllm", "vllm:num_requests_running 1\nvllm:num_requests_waiting 0\n",
                         Nanos{0}, &m);
  EXPECT_EQ(e, "vllm: missing vllm:kv_cache_usage_perc");
  e = ParseEngineMetrics("triton-trtllm",
                         "nv_trt_llm_request_metrics{request_type=\"scheduled\"} 1\n"
                         "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=\"fraction\"} 0\n",
                         Nanos{0}, &m);
  EXPECT_EQ(e, "triton-trtllm: missing nv_trt_llm_request_metrics{request_type=\"waiting\"}");
  e = ParseEngineMetrics("vllm", "vllm:num_requests_waiting NaN\n", Nanos{0}, &m);
  EXPECT_EQ(e, "vllm: non-finite value for vllm:num_requests_waiting");
  e = ParseEngineMetrics("vllm", "vllm:num_requests_waiting 1\nvllm:num_requests_running{x=} 2\n",
                         Nanos{0}, &m);
  EXPECT_EQ(e.rfind("vllm: line 2: ", 0), 0u) << e;
  e = ParseEngineMetrics("vllm", "<html>503 Service Unavailable</html>", Nanos{0}, &m);
  EXPECT_EQ(e.rfind("vllm: line 1: ", 0), 0u) << e;
}

TEST(EngineMetrics, EngineNames) {
  EXPECT_EQ(EngineFromName("vllm"), Engine::kVllm);
  EXPECT_EQ(EngineFromName("triton"), Engine::kTritonTrtllm);
  EXPECT_EQ(EngineFromName("tensorrt-llm"), Engine::kTrtllmServe);
  EXPECT_FALSE(EngineFromName("VLLM"));
  for (const auto& n : EngineNames()) EXPECT_EQ(EngineName(*EngineFromName(n)), n);
}

}  // namespace
}  // namespace tidegate::pool
