// batch/multipart.h: the Content-Type boundary, and multipart/form-data bodies as the OpenAI
// clients send them to POST /v1/files (Node's undici FormData), plus the RFC 2046 corners and
// every rejection with its message.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "batch/multipart.h"

namespace tidegate::batch {
namespace {

using namespace std::string_literals;

// The boundary undici's FormData serialiser makes: "----formdata-undici-0" + 11 digits.
constexpr std::string_view kUndici = "----formdata-undici-081974892969";

std::string Boundary(std::string_view content_type) {
  std::string error;
  std::string b = ExtractBoundary(content_type, &error);
  EXPECT_EQ(b.empty(), !error.empty()) << content_type << " -> " << error;
  return b;
}

std::string BoundaryError(std::string_view content_type) {
  std::string error;
  EXPECT_EQ(ExtractBoundary(content_type, &error), "") << content_type;
  return error;
}

std::vector<FormPart> Parse(std::string_view body, std::string_view boundary,
                            size_t max_parts = 64) {
  std::vector<FormPart> parts;
  std::string error;
  EXPECT_TRUE(ParseMultipart(body, boundary, &parts, &error, max_parts)) << error;
  return parts;
}

std::string ParseError(std::string_view body, std::string_view boundary, size_t max_parts = 64) {
  std::vector<FormPart> parts(1);
  std::string error;
  EXPECT_FALSE(ParseMultipart(body, boundary, &parts, &error, max_parts));
  EXPECT_TRUE(parts.empty());
  return error;
}

// One form-data part as undici writes it (a string field: no filename, no Content-Type).
std::string Field(std::string_view boundary, std::string_view name, std::string_view value) {
  return "--"s + std::string(boundary) + "\r\nContent-Disposition: form-data; name=\"" +
         std::string(name) + "\"\r\n\r\n" + std::string(value) + "\r\n";
}

// ---- ExtractBoundary ----

TEST(MultipartBoundary, UndiciContentType) {
  EXPECT_EQ(Boundary("multipart/form-data; boundary=----formdata-undici-081974892969"), kUndici);
}

TEST(MultipartBoundary, OtherClients) {
  EXPECT_EQ(Boundary("multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW"),
            "----WebKitFormBoundary7MA4YWxkTrZu0gW");
  EXPECT_EQ(Boundary("multipart/form-data; boundary=7d9f1c0b0e5a4f3c9a2b"), "7d9f1c0b0e5a4f3c9a2b");
}

TEST(MultipartBoundary, QuotedWithSpacesAndEscapes) {
  EXPECT_EQ(Boundary("multipart/form-data; boundary=\"simple boundary\""), "simple boundary");
  EXPECT_EQ(Boundary("multipart/form-data; boundary=\"a:b?c=d\""), "a:b?c=d");
  EXPECT_EQ(Boundary("multipart/form-data; boundary=\"ab\\c\""), "abc");  // quoted-pair
}

TEST(MultipartBoundary, CaseWhitespaceAndOtherParameters) {
  EXPECT_EQ(Boundary("Multipart/Form-Data;BOUNDARY=xyz"), "xyz");
  EXPECT_EQ(Boundary("  multipart/form-data ; charset=utf-8 ;  Boundary = xyz ; x=\"y;z\"  "),
            "xyz");
  EXPECT_EQ(Boundary("multipart/form-data;; boundary=xyz;"), "xyz");
}

TEST(MultipartBoundary, BoundaryOfSeventyCharactersIsTheLimit) {
  const std::string seventy(70, 'b');
  EXPECT_EQ(Boundary("multipart/form-data; boundary=" + seventy), seventy);
  EXPECT_EQ(BoundaryError("multipart/form-data; boundary=" + seventy + "b"),
            "Content-Type: the boundary is 71 characters long; RFC 2046 allows at most 70");
}

TEST(MultipartBoundary, WrongContentType) {
  EXPECT_EQ(BoundaryError("application/json"),
            "Content-Type: expected multipart/form-data, got \"application/json\"");
  EXPECT_EQ(BoundaryError("multipart/mixed; boundary=x"),
            "Content-Type: expected multipart/form-data, got \"multipart/mixed\"");
  EXPECT_EQ(BoundaryError(""), "Content-Type: expected multipart/form-data, got \"\"");
  EXPECT_EQ(BoundaryError("multipart/form-datax; boundary=x"),
            "Content-Type: expected multipart/form-data, got \"multipart/form-datax\"");
}

TEST(MultipartBoundary, MissingOrEmptyBoundary) {
  EXPECT_EQ(BoundaryError("multipart/form-data"),
            "Content-Type: multipart/form-data without a boundary parameter");
  EXPECT_EQ(BoundaryError("multipart/form-data; charset=utf-8"),
            "Content-Type: multipart/form-data without a boundary parameter");
  EXPECT_EQ(BoundaryError("multipart/form-data; boundary=\"\""),
            "Content-Type: the boundary is empty");
  EXPECT_EQ(BoundaryError("multipart/form-data; boundary="),
            "Content-Type: malformed parameters: parameter \"boundary\" has an empty value");
}

TEST(MultipartBoundary, InvalidBoundaries) {
  EXPECT_EQ(BoundaryError("multipart/form-data; boundary=a@b"),
            "Content-Type: the boundary contains the character '@' (0x40), which RFC 2046 does "
            "not allow");
  EXPECT_EQ(BoundaryError("multipart/form-data; boundary=\"ab \""),
            "Content-Type: the boundary ends with a space, which RFC 2046 does not allow");
  EXPECT_EQ(BoundaryError("multipart/form-data; boundary=x; boundary=y"),
            "Content-Type: more than one boundary parameter");
  EXPECT_EQ(BoundaryError("multipart/form-data; boundary=\"abc"),
            "Content-Type: malformed parameters: the quoted value of parameter \"boundary\" has "
            "no closing quote");
  EXPECT_EQ(BoundaryError("multipart/form-data boundary=x"),
            "Content-Type: malformed parameters: expected ';' before \"boundary=x\"");
  EXPECT_EQ(BoundaryError("multipart/form-data; boundary"),
            "Content-Type: malformed parameters: parameter \"boundary\" has no '=' and value");
}

TEST(MultipartBoundary, NullErrorIsAllowed) {
  EXPECT_EQ(ExtractBoundary("text/plain", nullptr), "");
  EXPECT_EQ(ExtractBoundary("multipart/form-data; boundary=q", nullptr), "q");
}

// ---- ParseMultipart: what the clients send ----

// The body the openai npm client produces for files.create({file, purpose: "batch"}) on Node
// (undici FormData): the file part with filename and application/octet-stream, the string field
// without headers beyond Content-Disposition, and the closing delimiter without a CRLF after it.
TEST(MultipartParse, UndiciOpenAIFilesUpload) {
  const std::string jsonl =
      "{\"custom_id\":\"r1\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{}}\n"
      "{\"custom_id\":\"r2\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{}}\n";
  const std::string body =
      "------formdata-undici-081974892969\r\n"
      "Content-Disposition: form-data; name=\"file\"; filename=\"x.jsonl\"\r\n"
      "Content-Type: application/octet-stream\r\n"
      "\r\n" +
      jsonl +
      "\r\n"
      "------formdata-undici-081974892969\r\n"
      "Content-Disposition: form-data; name=\"purpose\"\r\n"
      "\r\n"
      "batch\r\n"
      "------formdata-undici-081974892969--";
  const auto parts = Parse(body, Boundary("multipart/form-data; boundary=" + std::string(kUndici)));
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].name, "file");
  EXPECT_TRUE(parts[0].has_filename);
  EXPECT_EQ(parts[0].filename, "x.jsonl");
  EXPECT_EQ(parts[0].content_type, "application/octet-stream");
  EXPECT_EQ(parts[0].data, jsonl);
  EXPECT_EQ(parts[1].name, "purpose");
  EXPECT_FALSE(parts[1].has_filename);
  EXPECT_EQ(parts[1].filename, "");
  EXPECT_EQ(parts[1].content_type, "");
  EXPECT_EQ(parts[1].data, "batch");

  const FormPart* purpose = FindPart(parts, "purpose");
  ASSERT_NE(purpose, nullptr);
  EXPECT_EQ(purpose, &parts[1]);
  EXPECT_EQ(FindPart(parts, "file"), &parts[0]);
  EXPECT_EQ(FindPart(parts, "File"), nullptr);  // names are case-sensitive
  EXPECT_EQ(FindPart(parts, "missing"), nullptr);
}

// The same upload with purpose first, a File typed application/jsonl and the closing delimiter
// followed by CRLF (newer undici).
TEST(MultipartParse, UndiciPurposeFirstJsonlTypeTrailingCrlf) {
  const std::string b(kUndici);
  const std::string body = Field(b, "purpose", "batch") + "--" + b +
                           "\r\nContent-Disposition: form-data; name=\"file\"; "
                           "filename=\"requests.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n"
                           "{\"a\":1}\n\r\n--" +
                           b + "--\r\n";
  const auto parts = Parse(body, b);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].name, "purpose");
  EXPECT_EQ(parts[0].data, "batch");
  EXPECT_EQ(parts[1].name, "file");
  EXPECT_EQ(parts[1].filename, "requests.jsonl");
  EXPECT_EQ(parts[1].content_type, "application/jsonl");
  EXPECT_EQ(parts[1].data, "{\"a\":1}\n");
}

TEST(MultipartParse, QuotedBoundaryWithSpace) {
  const std::string b = Boundary("multipart/form-data; boundary=\"my boundary\"");
  ASSERT_EQ(b, "my boundary");
  const std::string body = Field(b, "a", "1") + "--my boundary--";
  const auto parts = Parse(body, b);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].data, "1");
}

TEST(MultipartParse, PreambleAndEpilogueAreIgnored) {
  const std::string body =
      "This is the preamble. --X is not a delimiter here\r\n--X\r\n"
      "Content-Disposition: form-data; name=\"a\"\r\n\r\nA\r\n"
      "--X--\r\nThis is the epilogue.\r\n--X\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\n";
  const auto parts = Parse(body, "X");
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].name, "a");
  EXPECT_EQ(parts[0].data, "A");
  // A body that opens with CRLF: the preamble is empty.
  EXPECT_EQ(Parse("\r\n" + Field("X", "a", "A") + "--X--", "X").size(), 1u);
}

TEST(MultipartParse, BinaryDataSurvives) {
  std::string data;
  for (int i = 0; i < 256; ++i) data += static_cast<char>(i);
  data += "\0\r\n\r\n\r\r\n\n--\r\n-\0--X\r"s;  // NULs, CRLFs, lone CR/LF, near-delimiters
  const std::string body =
      "--X\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.bin\"\r\n"
      "Content-Type: application/octet-stream\r\n\r\n" +
      data + "\r\n--X--\r\n";
  const auto parts = Parse(body, "X");
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].data.size(), data.size());
  EXPECT_EQ(parts[0].data, data);
  // The data view points into the body (no copy).
  EXPECT_EQ(parts[0].data.data(), body.data() + body.find("\r\n\r\n") + 4);
}

TEST(MultipartParse, DataEndingInCrlfKeepsIt) {
  // Only the CRLF right before the delimiter belongs to it.
  const std::string body = Field("X", "a", "line\r\n\r\n") + "--X--";
  const auto parts = Parse(body, "X");
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].data, "line\r\n\r\n");
}

TEST(MultipartParse, BoundaryLookalikesInDataAreData) {
  const std::string data =
      "--X at the start is not after CRLF\r\n"
      "a--X in the middle\r\n"
      "--Xabc\r\n"           // the boundary followed by more characters
      "--X-\r\n"             // one dash only
      "--X--abc\r\n"         // a closing delimiter needs a line end (or the end) after it
      "--X \t trailing\r\n"  // padding then something else
      "\n--X\r\n"            // LF, not CRLF, before it
      "end";
  const std::string body = Field("X", "f", data) + "--X--";
  const auto parts = Parse(body, "X");
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].data, data);
}

TEST(MultipartParse, BoundaryPrefixOfAnotherBoundary) {
  // A part whose data holds the delimiter of a longer boundary that starts with ours.
  const std::string data = "\r\n--Xtra\r\nContent-Disposition: form-data; name=\"inner\"\r\n\r\n";
  const std::string body = Field("X", "f", data) + "--X--";
  const auto parts = Parse(body, "X");
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].data, data);
}

TEST(MultipartParse, TransportPaddingAfterDelimiters) {
  const std::string body =
      "--X \t\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n"
      "--X  \r\nContent-Disposition: form-data; name=\"b\"\r\n\r\n2\r\n--X-- \t\r\nepilogue";
  const auto parts = Parse(body, "X");
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].data, "1");
  EXPECT_EQ(parts[1].data, "2");
}

TEST(MultipartParse, BareLfInHeaders) {
  const std::string body =
      "--X\nContent-Disposition: form-data; name=purpose\n\nbatch\r\n"
      "--X\nContent-Disposition: form-data; name=file; filename=a.jsonl\r\n"
      "Content-Type: application/jsonl\n\n{}\n\r\n--X--\n";
  const auto parts = Parse(body, "X");
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].name, "purpose");
  EXPECT_EQ(parts[0].data, "batch");
  EXPECT_EQ(parts[1].filename, "a.jsonl");
  EXPECT_EQ(parts[1].content_type, "application/jsonl");
  EXPECT_EQ(parts[1].data, "{}\n");
}

TEST(MultipartParse, HeaderNamesAndDispositionCaseInsensitive) {
  const std::string body =
      "--X\r\ncontent-disposition: Form-Data; NAME=\"a\"; FileName=\"f.txt\"\r\n"
      "CONTENT-TYPE:text/plain; charset=utf-8\r\nContent-Transfer-Encoding: binary\r\n"
      "X-Other:  ignored  \r\n\r\nA\r\n--X--";
  const auto parts = Parse(body, "X");
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].name, "a");
  EXPECT_EQ(parts[0].filename, "f.txt");
  EXPECT_EQ(parts[0].content_type, "text/plain; charset=utf-8");
  EXPECT_EQ(parts[0].data, "A");
}

TEST(MultipartParse, DispositionParameterForms) {
  const std::string body =
      "--X\r\nContent-Disposition: form-data;name=plain;filename=x.jsonl\r\n\r\n1\r\n"
      "--X\r\nContent-Disposition: form-data ; name = \"sp aced\" ; filename = \"\"\r\n\r\n2\r\n"
      "--X\r\nContent-Disposition: form-data; name=\"a\\\"b\"; filename=\"q\\\"uote;d.jsonl\"\r\n"
      "\r\n3\r\n"
      "--X\r\nContent-Disposition: form-data; name=\"f\"; "
      "filename*=UTF-8''%C3%A9.jsonl\r\n\r\n4\r\n"
      "--X\r\nContent-Disposition: form-data; name=\"w\"; "
      "filename=\"C:\\dir\\x.jsonl\"\r\n\r\n5\r\n"
      "--X\r\nContent-Disposition: form-data; name=\"%22u%22\"; filename=\"caf\xc3\xa9.jsonl\"\r\n"
      "\r\n6\r\n--X--";
  const auto parts = Parse(body, "X");
  ASSERT_EQ(parts.size(), 6u);
  EXPECT_EQ(parts[0].name, "plain");
  EXPECT_EQ(parts[0].filename, "x.jsonl");
  EXPECT_EQ(parts[1].name, "sp aced");
  EXPECT_TRUE(parts[1].has_filename);  // filename="" is present, and empty
  EXPECT_EQ(parts[1].filename, "");
  // Quoted-pairs end nothing and are left as written in the views.
  EXPECT_EQ(parts[2].name, "a\\\"b");
  EXPECT_EQ(parts[2].filename, "q\\\"uote;d.jsonl");
  EXPECT_EQ(parts[2].data, "3");
  // filename* alone is not a filename.
  EXPECT_FALSE(parts[3].has_filename);
  EXPECT_EQ(parts[3].filename, "");
  // A Windows path with raw backslashes (old browsers) is kept byte for byte.
  EXPECT_EQ(parts[4].filename, "C:\\dir\\x.jsonl");
  // undici's percent-escapes and raw UTF-8 are not decoded.
  EXPECT_EQ(parts[5].name, "%22u%22");
  EXPECT_EQ(parts[5].filename, "caf\xc3\xa9.jsonl");
  EXPECT_EQ(FindPart(parts, "a\\\"b"), &parts[2]);
}

TEST(MultipartParse, EmptyData) {
  // headers, empty line, empty data, delimiter
  auto parts = Parse("--X\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n\r\n--X--", "X");
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].data, "");
  // RFC 2046: body-part := headers [CRLF *OCTET], so the empty line's CRLF may be the
  // delimiter's own.
  parts = Parse(
      "--X\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n--X\r\n"
      "Content-Disposition: form-data; name=\"b\"\r\n\r\nB\r\n--X--",
      "X");
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].data, "");
  EXPECT_EQ(parts[1].data, "B");
}

TEST(MultipartParse, ClosingDelimiterOnlyMeansNoParts) {
  EXPECT_TRUE(Parse("--X--", "X").empty());
  EXPECT_TRUE(Parse("preamble\r\n--X--\r\n", "X").empty());
}

TEST(MultipartParse, PartLimit) {
  std::string body;
  for (int i = 0; i < 64; ++i) body += Field("X", "p" + std::to_string(i), std::to_string(i));
  EXPECT_EQ(Parse(body + "--X--", "X").size(), 64u);  // the default limit, reached
  EXPECT_EQ(ParseError(body + Field("X", "p64", "64") + "--X--", "X"),
            "multipart body: more than 64 parts (the limit)");
  const std::string three = Field("X", "a", "1") + Field("X", "b", "2") + Field("X", "c", "3");
  EXPECT_EQ(Parse(three + "--X--", "X", 3).size(), 3u);
  EXPECT_EQ(ParseError(three + "--X--", "X", 2), "multipart body: more than 2 parts (the limit)");
  EXPECT_EQ(ParseError(three + "--X--", "X", 0), "multipart body: more than 0 parts (the limit)");
}

TEST(MultipartParse, HeaderLimitIs8KiB) {
  // The header section (its lines, the empty line not counted) may be exactly 8192 bytes.
  const std::string disposition = "Content-Disposition: form-data; name=\"a\"\r\n";
  const std::string pad_head = "X-Pad: ";
  const size_t pad = kMaxPartHeaderBytes - disposition.size() - pad_head.size() - 2;
  const std::string fits = "--X\r\n" + disposition + pad_head + std::string(pad, 'p') + "\r\n";
  ASSERT_EQ(fits.size() - 5, kMaxPartHeaderBytes);
  const std::string fits_body = fits + "\r\nA\r\n--X--";
  auto parts = Parse(fits_body, "X");
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].data, "A");
  const std::string over = "--X\r\n" + disposition + pad_head + std::string(pad + 1, 'p') + "\r\n";
  EXPECT_EQ(ParseError(over + "\r\nA\r\n--X--", "X"),
            "multipart body: part 1 has more than 8 KiB of headers");
  // One endless header line is cut off at the limit, however long the body.
  EXPECT_EQ(ParseError("--X\r\nX-Long: " + std::string(1 << 20, 'a') + "\r\n\r\n\r\n--X--", "X"),
            "multipart body: part 1 has more than 8 KiB of headers");
  // Many short header lines count together.
  std::string many = "--X\r\n" + disposition;
  while (many.size() < 9000) many += "X-A: b\r\n";
  EXPECT_EQ(ParseError(many + "\r\nA\r\n--X--", "X"),
            "multipart body: part 1 has more than 8 KiB of headers");
}

// ---- ParseMultipart: rejections ----

TEST(MultipartParse, MissingClosingBoundary) {
  const std::string open = Field("X", "a", "1");
  EXPECT_EQ(ParseError("--X\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\ndata", "X"),
            "multipart body: the closing boundary --X-- is missing");
  EXPECT_EQ(ParseError(open, "X"), "multipart body: the closing boundary --X-- is missing");
  EXPECT_EQ(ParseError(open + "--X", "X"), "multipart body: the closing boundary --X-- is missing");
  EXPECT_EQ(ParseError(open + "--X\r\n", "X"),
            "multipart body: the closing boundary --X-- is missing");
  EXPECT_EQ(ParseError(open + "--X-", "X"),
            "multipart body: the closing boundary --X-- is missing");
  EXPECT_EQ(ParseError(open + "--X--junk", "X"),
            "multipart body: the closing boundary --X-- is missing");
}

TEST(MultipartParse, MissingOpeningBoundary) {
  EXPECT_EQ(ParseError("{\"not\":\"multipart\"}", "X"),
            "multipart body: the opening boundary --X is missing");
  EXPECT_EQ(ParseError(Field("Y", "a", "1") + "--Y--", "X"),
            "multipart body: the opening boundary --X is missing");
  EXPECT_EQ(ParseError("", "X"), "multipart body: the body is empty (expected the boundary --X)");
}

TEST(MultipartParse, MissingContentDisposition) {
  const std::string body =
      Field("X", "purpose", "batch") + "--X\r\nContent-Type: application/jsonl\r\n\r\n{}\r\n--X--";
  EXPECT_EQ(ParseError(body, "X"), "multipart body: part 2 has no Content-Disposition header");
  EXPECT_EQ(ParseError("--X\r\n\r\ndata\r\n--X--", "X"),
            "multipart body: part 1 has no Content-Disposition header");
}

TEST(MultipartParse, BadContentDisposition) {
  auto with = [](std::string_view cd) {
    return "--X\r\nContent-Disposition: " + std::string(cd) + "\r\n\r\nA\r\n--X--";
  };
  EXPECT_EQ(ParseError(with("attachment; name=\"a\""), "X"),
            "multipart body: part 1: Content-Disposition is \"attachment\", not form-data");
  EXPECT_EQ(ParseError(with("form-data; filename=\"a.jsonl\""), "X"),
            "multipart body: part 1: Content-Disposition has no name parameter");
  EXPECT_EQ(ParseError(with("form-data; name=\"a\"; name=\"b\""), "X"),
            "multipart body: part 1: Content-Disposition has more than one name parameter");
  EXPECT_EQ(ParseError(with("form-data; name=a; filename=x; filename=y"), "X"),
            "multipart body: part 1: Content-Disposition has more than one filename parameter");
  EXPECT_EQ(ParseError(with("form-data; name=\"a"), "X"),
            "multipart body: part 1: Content-Disposition is malformed: the quoted value of "
            "parameter \"name\" has no closing quote");
  EXPECT_EQ(ParseError(with("form-data; name=\"a\\\""), "X"),  // the escaped quote ends nothing
            "multipart body: part 1: Content-Disposition is malformed: the quoted value of "
            "parameter \"name\" has no closing quote");
  EXPECT_EQ(ParseError(with("form-data; name="), "X"),
            "multipart body: part 1: Content-Disposition is malformed: parameter \"name\" has an "
            "empty value");
  EXPECT_EQ(ParseError(with("form-data name=a"), "X"),
            "multipart body: part 1: Content-Disposition is malformed: expected ';' before "
            "\"name=a\"");
}

TEST(MultipartParse, BadHeaders) {
  EXPECT_EQ(ParseError("--X\r\nContent-Disposition: form-data; name=\"a\"\r\n", "X"),
            "multipart body: part 1 has no empty line after its headers (the body ends inside "
            "them)");
  EXPECT_EQ(ParseError("--X\r\nContent-Disposition: form-data; name=\"a\"\r\n--X--", "X"),
            "multipart body: part 1 has no empty line between its headers and the boundary --X");
  EXPECT_EQ(
      ParseError("--X\r\nContent-Disposition: form-data;\r\n name=\"a\"\r\n\r\nA\r\n--X--", "X"),
      "multipart body: part 1 has a folded header line (continuation lines are not "
      "supported)");
  EXPECT_EQ(ParseError("--X\r\nthis is not a header\r\n\r\nA\r\n--X--", "X"),
            "multipart body: part 1 has a malformed header line \"this is not a header\"");
  EXPECT_EQ(ParseError("--X\r\nBad Name: v\r\n\r\nA\r\n--X--", "X"),
            "multipart body: part 1 has a malformed header line \"Bad Name: v\"");
  EXPECT_EQ(
      ParseError("--X\r\nContent-Disposition: form-data; name=\"a\0b\"\r\n\r\nA\r\n--X--"s, "X"),
      "multipart body: part 1 has a control character in its header "
      "\"Content-Disposition\"");
  EXPECT_EQ(ParseError("--X\r\nContent-Disposition: form-data; name=a\rb\r\n\r\nA\r\n--X--", "X"),
            "multipart body: part 1 has a control character in its header "
            "\"Content-Disposition\"");
  EXPECT_EQ(ParseError("--X\r\nContent-Disposition: form-data; name=a\r\nContent-Type: a\r\n"
                       "content-type: b\r\n\r\nA\r\n--X--",
                       "X"),
            "multipart body: part 1 has more than one Content-Type header");
  EXPECT_EQ(ParseError("--X\r\nContent-Disposition: form-data; name=a\r\n"
                       "Content-Disposition: form-data; name=b\r\n\r\nA\r\n--X--",
                       "X"),
            "multipart body: part 1 has more than one Content-Disposition header");
}

TEST(MultipartParse, InvalidBoundaryArgument) {
  EXPECT_EQ(ParseError("--\r\n\r\n", ""), "multipart body: the boundary is empty");
  EXPECT_EQ(ParseError("x", std::string(71, 'b')),
            "multipart body: the boundary is 71 characters long; RFC 2046 allows at most 70");
  EXPECT_EQ(ParseError("x", "a\r\nb"),
            "multipart body: the boundary contains the character (0x0d), which RFC 2046 does not "
            "allow");
  // The longest valid boundary works end to end.
  const std::string b(70, 'z');
  const std::string body = Field(b, "a", "A") + "--" + b + "--";
  const auto parts = Parse(body, b);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].data, "A");
}

TEST(MultipartParse, NullErrorIsAllowed) {
  std::vector<FormPart> parts;
  EXPECT_FALSE(ParseMultipart("nothing", "X", &parts, nullptr));
  EXPECT_FALSE(ParseMultipart("nothing", "", &parts, nullptr));
  EXPECT_TRUE(ParseMultipart(Field("X", "a", "1") + "--X--", "X", &parts, nullptr));
  EXPECT_EQ(parts.size(), 1u);
}

// ---- size: linear time on large and adversarial bodies ----

TEST(MultipartParse, LargeBodyWithManyNearDelimiters) {
  // 8 MiB of data made of CRLF "--" + almost the boundary, which a naive rescan would revisit.
  const std::string b = std::string(69, 'a') + "b";
  const std::string near = "\r\n--" + std::string(69, 'a') + "c";
  std::string data;
  data.reserve(8u << 20);
  while (data.size() < (8u << 20)) data += near;
  const std::string body = Field(b, "file", data) + "--" + b + "--";
  const auto parts = Parse(body, b);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].data.size(), data.size());
  EXPECT_TRUE(parts[0].data == data);
  // The same with false candidates that are followed by long transport-padding-like runs.
  std::string padded;
  while (padded.size() < (4u << 20)) padded += "\r\n--X" + std::string(1000, ' ') + "x";
  const std::string body2 = Field("X", "file", padded) + "--X--";
  const auto parts2 = Parse(body2, "X");
  ASSERT_EQ(parts2.size(), 1u);
  EXPECT_TRUE(parts2[0].data == padded);
}

}  // namespace
}  // namespace tidegate::batch
