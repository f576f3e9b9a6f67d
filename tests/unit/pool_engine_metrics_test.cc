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

TEST(EngineMetrics, SglangOlderCacheConfigInfo) {
  EndpointMetrics m;
  ASSERT_EQ(ParseEngineMetrics("sglang", Sample("sglang.txt"), Nanos{0}, &m), "");
  EXPECT_EQ(m.waiting, 9);
  EXPECT_EQ(m.running, 7);
  EXPECT_DOUBLE_EQ(m.kv_usage, 0.62);
  // Older SGLang: sglang:cache_config_info{page_size,num_pages}.
  EXPECT_EQ(m.block_size, 1);
  EXPECT_EQ(m.num_gpu_blocks, 180000);
  EXPECT_EQ(m.models, (std::vector<std::string>{"Qwen/Qwen2.5-7B-Instruct"}));
}

TEST(EngineMetrics, SglangPrioritySeriesAndTensorRanksCountOnce) {
  EndpointMetrics m;
  ASSERT_EQ(ParseEngineMetrics("sglang", Sample("sglang_priority_tp.txt"), Nanos{0}, &m), "");
  // The total series (priority="") stands; the per-priority parts and the second tensor rank
  // are copies of it. Summing everything would give 24 and 12.
  EXPECT_EQ(m.waiting, 6);
  EXPECT_EQ(m.running, 3);
  EXPECT_DOUBLE_EQ(m.kv_usage, 0.41);
  // Current SGLang: the page_size / num_pages gauges.
  EXPECT_EQ(m.block_size, 16);
  EXPECT_EQ(m.num_gpu_blocks, 30000);
  EXPECT_EQ(m.models, (std::vector<std::string>{"meta-llama/Llama-3.1-8B-Instruct"}));
}

TEST(EngineMetrics, SglangDataParallelRanksAreSummed) {
  EndpointMetrics m;
  ASSERT_EQ(ParseEngineMetrics("sglang", Sample("sglang_dp.txt"), Nanos{0}, &m), "");
  EXPECT_EQ(m.waiting, 5);  // dp 0: 2 + dp 1: 3, each reported by two tensor ranks
  EXPECT_EQ(m.running, 9);
  EXPECT_DOUBLE_EQ(m.kv_usage, 0.5);  // the fuller scheduler
  EXPECT_EQ(m.num_gpu_blocks, 0);     // no page size exported: unknown, not guessed
}

TEST(EngineMetrics, SglangPerPriorityPartsWithoutTotalAreSummed) {
  EndpointMetrics m;
  ASSERT_EQ(ParseEngineMetrics("sglang",
                               "sglang:num_queue_reqs{priority=\"0\"} 4\n"
                               "sglang:num_queue_reqs{priority=\"5\"} 1\n"
                               "sglang:num_running_reqs{priority=\"0\"} 2\n"
                               "sglang:token_usage 0.1\n"
                               "sglang:page_size 8\n"
                               "sglang:max_total_num_tokens 8000\n",
                               Nanos{0}, &m),
            "");
  EXPECT_EQ(m.waiting, 5);
  EXPECT_EQ(m.running, 2);
  EXPECT_EQ(m.block_size, 8);
  EXPECT_EQ(m.num_gpu_blocks, 1000);  // from max_total_num_tokens / page size
}

TEST(EngineMetrics, TrtllmServe) {
  EndpointMetrics m;
  ASSERT_EQ(ParseEngineMetrics("trtllm-serve", Sample("trtllm_serve.txt"), Nanos{0}, &m), "");
  EXPECT_EQ(m.waiting, 1);
  EXPECT_EQ(m.running, 5);
  EXPECT_DOUBLE_EQ(m.kv_usage, 0.25);
  // Its model_name label ("undefined" on real servers) does not name the served model.
  EXPECT_TRUE(m.models.empty());
  EXPECT_EQ(TraitsOf(Engine::kTrtllmServe).metrics_path, "/prometheus/metrics");
}

TEST(EngineMetrics, TrtllmServeJsonPageIsRecognisedButNotParsed) {
  const std::string json = Sample("trtllm_serve_iteration_stats.json");
  Detection d = DetectEngine(json);
  EXPECT_TRUE(d.json_stats);
  EXPECT_EQ(d.engine, Engine::kTrtllmServe);
  EndpointMetrics m;
  MetricsParse p = ParseEngineMetricsPage(Engine::kTrtllmServe, json, Nanos{0}, &m);
  EXPECT_FALSE(p.ok());
  EXPECT_FALSE(p.missing);  // not Prometheus text at all
}

TEST(EngineMetrics, TritonTrtllm) {
  EndpointMetrics m;
  ASSERT_EQ(ParseEngineMetrics("triton-trtllm", Sample("triton_trtllm.txt"), Nanos{0}, &m), "");
  EXPECT_EQ(m.waiting, 2);
  EXPECT_EQ(m.running, 8);  // request_type="active", not "scheduled" (6)
  EXPECT_DOUBLE_EQ(m.kv_usage, 0.3);
  EXPECT_EQ(m.block_size, 64);        // kv_cache_block_type="tokens_per"
  EXPECT_EQ(m.num_gpu_blocks, 1000);  // kv_cache_block_type="max"
  // Its `model` label is the Triton model ("tensorrt_llm"), not the served OpenAI model.
  EXPECT_TRUE(m.models.empty());
  EXPECT_EQ(TraitsOf(Engine::kTritonTrtllm).metrics_port, 8002);
}

TEST(EngineMetrics, LlamaCpp) {
  EndpointMetrics m;
  ASSERT_EQ(ParseEngineMetrics("llama.cpp", Sample("llamacpp.txt"), Nanos{0}, &m), "");
  EXPECT_EQ(m.waiting, 5);
  EXPECT_EQ(m.running, 2);
  EXPECT_FALSE(m.has_kv);
  EXPECT_EQ(m.kv_usage, 0);
  EXPECT_TRUE(m.models.empty());
  ASSERT_EQ(ParseEngineMetrics("llamacpp", Sample("llamacpp_kv.txt"), Nanos{0}, &m), "");
  EXPECT_TRUE(m.has_kv);  // older builds still export kv_cache_usage_ratio
  EXPECT_DOUBLE_EQ(m.kv_usage, 0.125);
}

TEST(EngineMetrics, DetectsEachEngineFromItsPage) {
  EXPECT_EQ(DetectEngine(Sample("vllm.txt")).engine, Engine::kVllm);
  EXPECT_EQ(DetectEngine(Sample("sglang_priority_tp.txt")).engine, Engine::kSglang);
  EXPECT_EQ(DetectEngine(Sample("trtllm_serve.txt")).engine, Engine::kTrtllmServe);
  EXPECT_EQ(DetectEngine(Sample("triton_trtllm.txt")).engine, Engine::kTritonTrtllm);
  EXPECT_EQ(DetectEngine(Sample("llamacpp.txt")).engine, Engine::kLlamaCpp);
  EXPECT_FALSE(DetectEngine(Sample("trtllm_serve.txt")).json_stats);
  EXPECT_FALSE(DetectEngine("process_cpu_seconds_total 3\n").engine);
  EXPECT_FALSE(DetectEngine("<html>404</html>").engine);
  EXPECT_FALSE(DetectEngine("").engine);
  // Triton's page without the TRT-LLM backend metrics still names Triton.
  EXPECT_EQ(DetectEngine("nv_inference_request_success{model=\"m\",version=\"1\"} 3\n").engine,
            Engine::kTritonTrtllm);
}

TEST(EngineMetrics, EngineFromOwner) {
  EXPECT_EQ(EngineFromOwner("vllm"), Engine::kVllm);
  EXPECT_EQ(EngineFromOwner("sglang"), Engine::kSglang);
  EXPECT_EQ(EngineFromOwner("llamacpp"), Engine::kLlamaCpp);
  EXPECT_EQ(EngineFromOwner("tensorrt_llm"), Engine::kTrtllmServe);
  EXPECT_EQ(EngineFromOwner("Triton Inference Server"), Engine::kTritonTrtllm);
  EXPECT_FALSE(EngineFromOwner("openai"));
  EXPECT_FALSE(EngineFromOwner(""));
}

TEST(EngineMetrics, MissingIsToldApartFromMalformed) {
  EndpointMetrics m;
  MetricsParse p = ParseEngineMetricsPage(Engine::kTrtllmServe, "trtllm_request_success_total 3\n",
                                          Nanos{0}, &m);
  EXPECT_TRUE(p.missing);
  EXPECT_EQ(p.error, "trtllm-serve: missing trtllm_num_requests_waiting");
  p = ParseEngineMetricsPage(Engine::kVllm, "vllm:num_requests_waiting{x=} 1\n", Nanos{0}, &m);
  EXPECT_FALSE(p.ok());
  EXPECT_FALSE(p.missing);
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
                         "nv_trt_llm_request_metrics{request_type=\"active\"} 1\n"
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
