// The relay's upstream parsing (gateway/http1.h): response heads and chunked bodies.
#include "gateway/http1.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tidegate::gateway::http1 {
namespace {

std::vector<std::pair<std::string, std::string>> Headers(const ResponseHead& h) {
  std::vector<std::pair<std::string, std::string>> out;
  ForEachEndToEndHeader(h, [&](std::string_view n, std::string_view v) {
    out.emplace_back(std::string(n), std::string(v));
  });
  return out;
}

TEST(Http1Head, ParsesStatusFramingAndEndToEndHeaders) {
  const std::string in =
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
      "Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n"
      "x-request-id:  abc \r\n\r\nBODY";
  ResponseHead h;
  ASSERT_EQ(ParseResponseHead(in, false, &h), HeadStatus::kOk) << h.error;
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.reason, "OK");
  EXPECT_EQ(h.body, BodyKind::kChunked);
  EXPECT_TRUE(h.keep_alive);
  EXPECT_EQ(h.content_type, "text/event-stream");
  EXPECT_EQ(in.substr(h.head_bytes), "BODY");
  // Hop-by-hop headers, and the ones Connection names, are not relayed.
  auto hs = Headers(h);
  ASSERT_EQ(hs.size(), 2u);
  EXPECT_EQ(hs[0], (std::pair<std::string, std::string>{"Content-Type", "text/event-stream"}));
  EXPECT_EQ(hs[1], (std::pair<std::string, std::string>{"x-request-id", "abc"}));
}

TEST(Http1Head, BodyFramingRules) {
  ResponseHead h;
  ASSERT_EQ(ParseResponseHead("HTTP/1.1 404 Not Found\r\nContent-Length: 12\r\n\r\n", false, &h),
            HeadStatus::kOk);
  EXPECT_EQ(h.body, BodyKind::kLength);
  EXPECT_EQ(h.content_length, 12u);
  h = {};
  ASSERT_EQ(ParseResponseHead("HTTP/1.1 204 No Content\r\n\r\n", false, &h), HeadStatus::kOk);
  EXPECT_EQ(h.body, BodyKind::kNone);
  h = {};
  ASSERT_EQ(ParseResponseHead("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, &h),
            HeadStatus::kOk);
  EXPECT_EQ(h.body, BodyKind::kNone);  // a response to HEAD
  h = {};
  ASSERT_EQ(ParseResponseHead("HTTP/1.0 200 OK\r\n\r\n", false, &h), HeadStatus::kOk);
  EXPECT_EQ(h.body, BodyKind::kUntilClose);
  EXPECT_FALSE(h.keep_alive);
  h = {};
  ASSERT_EQ(ParseResponseHead("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                              false, &h),
            HeadStatus::kOk);
  EXPECT_FALSE(h.keep_alive);
  h = {};
  // Transfer-Encoding wins over Content-Length.
  ASSERT_EQ(ParseResponseHead(
                "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                false, &h),
            HeadStatus::kOk);
  EXPECT_EQ(h.body, BodyKind::kChunked);
  h = {};
  ASSERT_EQ(ParseResponseHead("HTTP/1.1 100 Continue\r\n\r\n", false, &h), HeadStatus::kOk);
  EXPECT_EQ(h.status, 100);
  EXPECT_EQ(h.body, BodyKind::kNone);
  h = {};
  ASSERT_EQ(ParseResponseHead("HTTP/1.1 200 OK\n\nx", false, &h), HeadStatus::kOk);  // bare LF
  EXPECT_EQ(h.head_bytes, 17u);
}

TEST(Http1Head, IncompleteAndInvalid) {
  ResponseHead h;
  EXPECT_EQ(ParseResponseHead("HTTP/1.1 200 OK\r\nContent-Le", false, &h), HeadStatus::kIncomplete);
  for (const char* bad :
       {"HTTP/2 200 OK\r\n\r\n", "SSH-2.0-OpenSSH\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n", "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        "HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"}) {
    ResponseHead b;
    EXPECT_EQ(ParseResponseHead(bad, false, &b), HeadStatus::kInvalid) << bad;
    EXPECT_NE(b.error, nullptr) << bad;
  }
  std::string huge = "HTTP/1.1 200 OK\r\nX: " + std::string(kMaxHeadBytes, 'a');
  EXPECT_EQ(ParseResponseHead(huge, false, &h), HeadStatus::kInvalid);
}

// Feeds `body` to a decoder in pieces of `step` bytes; returns the decoded data.
std::string DecodeInPieces(const std::string& body, size_t step, ChunkDecoder* d,
                           std::string* extra_out = nullptr) {
  std::string out;
  for (size_t pos = 0; pos < body.size() && !d->done() && !d->failed(); pos += step) {
    std::string piece = body.substr(pos, step);
    size_t extra = 0;
    const size_t n = d->Decode(piece.data(), piece.size(), &extra);
    out.append(piece.data(), n);
    if (extra_out) extra_out->assign(piece.data() + n, extra);
  }
  return out;
}

TEST(Http1Chunked, DecodesInPlaceWhateverTheReadBoundaries) {
  const std::string body =
      "5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n";
  for (size_t step : {1u, 2u, 3u, 7u, 1000u}) {
    ChunkDecoder d;
    EXPECT_EQ(DecodeInPieces(body, step, &d), "hello 0123456789") << "step " << step;
    EXPECT_TRUE(d.done()) << "step " << step;
    EXPECT_FALSE(d.failed());
  }
  // Bytes after the end of the body are reported, right after the data.
  ChunkDecoder d;
  std::string extra;
  EXPECT_EQ(DecodeInPieces("3\r\nabc\r\n0\r\n\r\nHTTP", 100, &d, &extra), "abc");
  EXPECT_EQ(extra, "HTTP");
}

TEST(Http1Chunked, BoundaryAndMalformed) {
  ChunkDecoder d;
  std::string part = "4\r\nab";
  size_t extra = 0;
  EXPECT_TRUE(d.at_boundary());
  EXPECT_EQ(d.Decode(part.data(), part.size(), &extra), 2u);
  EXPECT_FALSE(d.at_boundary());
  std::string rest = "cd\r\n";
  EXPECT_EQ(d.Decode(rest.data(), rest.size(), &extra), 2u);
  EXPECT_TRUE(d.at_boundary());
  for (const char* bad :
       {"x\r\n", "5\r\nhelloXX", ";\r\n", "12345678901234567\r\n", "3\r\nabc\r\n0\r\nTrailer\rX"}) {
    ChunkDecoder b;
    DecodeInPieces(bad, 1000, &b);
    EXPECT_TRUE(b.failed()) << bad;
  }
}

}  // namespace
}  // namespace tidegate::gateway::http1

namespace tidegate::gateway::http1 {
namespace {

TEST(Http1Request, ParsesTheRequestLineFramingAndKnownHeaders) {
  const std::string in =
      "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
      "Content-Length: 17\r\nX-Gateway-Inference-Objective: premium\r\n"
      "x-llm-d-inference-fairness-id: tenant-b\r\nx-llm-d-inference-ttl: 250\r\n"
      "x-request-id: abc\r\nX-Request-Id: second\r\n\r\n{\"model\":\"m\"}...";
  RequestHead h;
  ASSERT_EQ(ParseRequestHead(in, &h), HeadStatus::kOk) << h.error;
  EXPECT_EQ(h.method, "POST");
  EXPECT_EQ(h.target, "/v1/chat/completions?x=1");
  EXPECT_FALSE(h.http10);
  EXPECT_TRUE(h.keep_alive);
  EXPECT_EQ(h.body, BodyKind::kLength);
  EXPECT_EQ(h.content_length, 17u);
  EXPECT_EQ(in.substr(h.head_bytes, 3), "{\"m");
  EXPECT_EQ(h.Get(Known::kHost), "gw");
  EXPECT_EQ(h.Get(Known::kObjective), "premium");
  EXPECT_EQ(h.Get(Known::kFairnessIdAlias), "tenant-b");
  EXPECT_EQ(h.Get(Known::kTtlMs), "250");
  EXPECT_EQ(h.Get(Known::kRequestId), "abc");  // the first one counts
  EXPECT_TRUE(h.Get(Known::kSessionId).empty());
  int n = 0;
  ForEachEndToEndHeader(h, [&](std::string_view name, std::string_view) {
    ++n;
    EXPECT_NE(name, "Content-Length");
  });
  EXPECT_EQ(n, 7);
}

TEST(Http1Request, ConnectionRulesChunkedAndExpect) {
  RequestHead h;
  ASSERT_EQ(ParseRequestHead("GET /healthz HTTP/1.0\r\n\r\n", &h), HeadStatus::kOk);
  EXPECT_TRUE(h.http10);
  EXPECT_FALSE(h.keep_alive);
  EXPECT_EQ(h.body, BodyKind::kNone);
  h = {};
  ASSERT_EQ(ParseRequestHead("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &h),
            HeadStatus::kOk);
  EXPECT_TRUE(h.keep_alive);
  h = {};
  ASSERT_EQ(ParseRequestHead("POST / HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
                             "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
                             &h),
            HeadStatus::kOk);
  EXPECT_FALSE(h.keep_alive);
  EXPECT_EQ(h.body, BodyKind::kChunked);
  EXPECT_TRUE(h.expect_continue);
  h = {};
  EXPECT_EQ(ParseRequestHead("POST / HTTP/1.1\r\nContent-Le", &h), HeadStatus::kIncomplete);
}

TEST(Http1Request, MalformedRequestsSayWhyAndWhichStatus) {
  struct Case {
    std::string in;
    int status;
  };
  const Case cases[] = {
      {"GARBAGE\r\n\r\n", 400},
      {"POST  / HTTP/1.1\r\n\r\n", 400},
      {"POST / HTTP/2.0\r\n\r\n", 505},
      {"POST / FTP/1.0\r\n\r\n", 400},
      {"PO ST / HTTP/1.1\r\n\r\n", 400},
      {"POST /\x01 HTTP/1.1\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nX: a\x01b\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\n folded\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
      // RFC 9112 §6.3: chunked not last (or absent) is 400; another coding before it is 501.
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\n",
       400},
      {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: xchunked\r\n\r\n",
       400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n",
       400},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
      {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
       400},
      // RFC 9112 §3.2: HTTP/1.1 needs exactly one Host.
      {"GET / HTTP/1.1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nX: " + std::string(kMaxHeadBytes, 'a'), 431},
  };
  for (const auto& c : cases) {
    RequestHead h;
    EXPECT_EQ(ParseRequestHead(c.in, &h), HeadStatus::kInvalid) << c.in.substr(0, 60);
    EXPECT_EQ(h.error_status, c.status) << c.in.substr(0, 60);
    EXPECT_NE(h.error, nullptr);
  }
}

}  // namespace
}  // namespace tidegate::gateway::http1
