// Table tests for the strict HTTP/1.1 parser (RFC 9112): valid and hostile request heads,
// request framing (smuggling vectors), chunk sizes, chunked bodies and response framing.
// Also the client's URLs and redirect resolution, and its reading of a response off a
// stream pair, on both backends.
#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <string_view>

#include "corio/tcp.hpp"
#include "corio/timeout.hpp"
#include "http/parser.hpp"
#include "http/response_reader.hpp"
#include "http/url.hpp"
#include "support/backends.hpp"

using namespace corio::http;
using namespace corio::http::detail;
using namespace std::string_view_literals;
using namespace std::chrono_literals;
using corio::task;

namespace {

/// The status of the protocol_error that `f` throws, or 0 if it throws none.
template <class F>
int status_of(F&& f) {
  try {
    f();
  } catch (const protocol_error& e) {
    return e.status();
  }
  return 0;
}

int request_status(std::string_view head) {
  return status_of([&] { parse_request_head(head); });
}

headers fields(std::initializer_list<std::pair<const char*, const char*>> list) {
  headers h;
  for (const auto& [name, value] : list) h.add(name, value);
  return h;
}

int framing_status(const headers& h) {
  return status_of([&] { request_framing(h); });
}

// --- request heads ------------------------------------------------------------------------

TEST(HttpParser, ValidGet) {
  request_head r = parse_request_head(
      "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n");
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.target, "/index.html?q=1");
  EXPECT_EQ(r.version_minor, 1);
  ASSERT_EQ(r.headers.fields().size(), 2u);
  EXPECT_EQ(*r.headers.get("host"), "example.com");
  EXPECT_EQ(*r.headers.get("ACCEPT"), "*/*");
}

TEST(HttpParser, ValidHttp10WithoutHost) {
  request_head r = parse_request_head("GET / HTTP/1.0\r\n\r\n");
  EXPECT_EQ(r.version_minor, 0);
  EXPECT_TRUE(r.headers.empty());
}

TEST(HttpParser, ValuesAreTrimmedOfOptionalWhitespace) {
  request_head r = parse_request_head("GET / HTTP/1.1\r\nHost:\t h \t\r\nX-Empty:\r\n\r\n");
  EXPECT_EQ(*r.headers.get("Host"), "h");
  EXPECT_EQ(*r.headers.get("X-Empty"), "");
}

TEST(HttpParser, ValidMethodsAndTargets) {
  EXPECT_EQ(parse_request_head("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").target, "*");
  EXPECT_EQ(parse_request_head("CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n").target, "h:443");
  EXPECT_EQ(parse_request_head("GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n").target, "http://h/x");
  EXPECT_EQ(parse_request_head("M-SEARCH / HTTP/1.1\r\nHost: h\r\n\r\n").method, "M-SEARCH");
}

TEST(HttpParser, DuplicateFieldsKeptInOrder) {
  request_head r = parse_request_head("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\na: 2\r\n\r\n");
  EXPECT_EQ(r.headers.count("A"), 2u);
  EXPECT_EQ(*r.headers.get("a"), "1");
}

TEST(HttpParser, BareLfRejected) {
  EXPECT_EQ(request_status("GET / HTTP/1.1\nHost: h\n\n"), 400);
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\nHost: h\n\r\n"), 400);
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\nHost: h\r\n\n"), 400);
}

TEST(HttpParser, BareCrRejected) {
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n"), 400);
  EXPECT_EQ(request_status("GET /\r HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
}

TEST(HttpParser, ObsFoldInRequestsRejected) {
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"), 400);
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n"), 400);
  // Whitespace before the first field (RFC 9112 §2.2) is rejected too.
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\n Host: h\r\n\r\n"), 400);
}

TEST(HttpParser, SpaceBeforeColonRejected) {
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\nHost : h\r\n\r\n"), 400);
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\nHost: h\r\nContent-Length\t: 5\r\n\r\n"), 400);
}

TEST(HttpParser, BadHeaderNamesRejected) {
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\nHost: h\r\n: empty\r\n\r\n"), 400);
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\nHost: h\r\nX(y): 1\r\n\r\n"), 400);
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\nHost: h\r\nX\"y: 1\r\n\r\n"), 400);
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\nHost: h\r\nno colon here\r\n\r\n"), 400);
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\nHost: h\r\nX\xc3\xa9: 1\r\n\r\n"), 400);
}

TEST(HttpParser, ControlCharactersAndNulInValuesRejected) {
  using namespace std::string_literals;
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n"s), 400);
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n"), 400);
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01\r\n\r\n"), 400);
  // obs-text (0x80-0xff) and HTAB inside a value are allowed.
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9\ta\r\n\r\n"), 0);
}

TEST(HttpParser, BadRequestLinesRejected) {
  EXPECT_EQ(request_status("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);   // two spaces
  EXPECT_EQ(request_status("GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), 400);   // trailing space
  EXPECT_EQ(request_status("GET /\r\nHost: h\r\n\r\n"), 400);             // HTTP/0.9 style
  EXPECT_EQ(request_status("GET / a HTTP/1.1\r\nHost: h\r\n\r\n"), 400);  // space in target
  EXPECT_EQ(request_status("G(T / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);    // bad method token
  EXPECT_EQ(request_status(" / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);       // empty method
  EXPECT_EQ(request_status("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
  EXPECT_EQ(request_status("GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
  EXPECT_EQ(request_status("\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);  // leading CRLF
}

TEST(HttpParser, BadVersionsRejected) {
  EXPECT_EQ(request_status("GET / http/1.1\r\nHost: h\r\n\r\n"), 400);
  EXPECT_EQ(request_status("GET / HTTP/1\r\nHost: h\r\n\r\n"), 400);
  EXPECT_EQ(request_status("GET / HTTP/1.10\r\nHost: h\r\n\r\n"), 400);
  EXPECT_EQ(request_status("GET / HTTP/x.1\r\nHost: h\r\n\r\n"), 400);
}

TEST(HttpParser, UnsupportedMajorVersionIs505) {
  EXPECT_EQ(request_status("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), 505);
  EXPECT_EQ(request_status("GET / HTTP/0.9\r\nHost: h\r\n\r\n"), 505);
  EXPECT_EQ(request_status("GET / HTTP/3.0\r\n\r\n"), 505);
}

TEST(HttpParser, Http11NeedsExactlyOneHost) {
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"), 400);
  EXPECT_EQ(request_status("GET / HTTP/1.0\r\nHost: a\r\n\r\n"), 0);
}

TEST(HttpParser, UnterminatedHeadRejected) {
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\nHost: h\r\n"), 400);
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\nHost: h"), 400);
  EXPECT_EQ(request_status(""), 400);
}

// --- request framing (smuggling) ------------------------------------------------------------

TEST(HttpParser, FramingContentLength) {
  body_framing f = request_framing(fields({{"Content-Length", "42"}}));
  EXPECT_EQ(f.kind, body_kind::length);
  EXPECT_EQ(f.length, 42u);
  EXPECT_EQ(request_framing(fields({{"Content-Length", "0"}})).kind, body_kind::none);
  EXPECT_EQ(request_framing(headers()).kind, body_kind::none);
}

TEST(HttpParser, FramingChunked) {
  EXPECT_EQ(request_framing(fields({{"Transfer-Encoding", "chunked"}})).kind, body_kind::chunked);
  EXPECT_EQ(request_framing(fields({{"transfer-encoding", "Chunked"}})).kind, body_kind::chunked);
}

TEST(HttpParser, DuplicateContentLengthIs400) {
  EXPECT_EQ(framing_status(fields({{"Content-Length", "5"}, {"Content-Length", "5"}})), 400);
  EXPECT_EQ(framing_status(fields({{"Content-Length", "5"}, {"content-length", "6"}})), 400);
  EXPECT_EQ(framing_status(fields({{"Content-Length", "5, 5"}})), 400);
}

TEST(HttpParser, ContentLengthWithTransferEncodingIs400) {
  EXPECT_EQ(framing_status(fields({{"Content-Length", "5"}, {"Transfer-Encoding", "chunked"}})),
            400);
  EXPECT_EQ(framing_status(fields({{"Transfer-Encoding", "chunked"}, {"Content-Length", "0"}})),
            400);
}

TEST(HttpParser, TransferCodingOtherThanChunkedIs501) {
  EXPECT_EQ(framing_status(fields({{"Transfer-Encoding", "gzip"}})), 501);
  EXPECT_EQ(framing_status(fields({{"Transfer-Encoding", "gzip, chunked"}})), 501);
  EXPECT_EQ(framing_status(fields({{"Transfer-Encoding", "chunked, chunked"}})), 501);
  EXPECT_EQ(
      framing_status(fields({{"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}})),
      501);
  EXPECT_EQ(framing_status(fields({{"Transfer-Encoding", "identity"}})), 501);
}

TEST(HttpParser, InvalidContentLengthIs400) {
  for (const char* bad : {"-1", "+5", " ", "", "0x10", "1e3", "5 5", "١", "18446744073709551616",
                          "99999999999999999999999", "1234567890123456789"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(framing_status(fields({{"Content-Length", bad}})), 400);
  }
  // Large but representable values parse (max_body_bytes is enforced by the server).
  EXPECT_EQ(request_framing(fields({{"Content-Length", "123456789012345678"}})).length,
            123456789012345678u);
  EXPECT_EQ(request_framing(fields({{"Content-Length", "007"}})).length, 7u);
}

// --- chunk sizes and chunked bodies --------------------------------------------------------

TEST(HttpParser, ChunkSizeHex) {
  EXPECT_EQ(parse_chunk_size("0"), 0u);
  EXPECT_EQ(parse_chunk_size("a"), 10u);
  EXPECT_EQ(parse_chunk_size("FF"), 255u);
  EXPECT_EQ(parse_chunk_size("1aB2"), 0x1ab2u);
  EXPECT_EQ(parse_chunk_size("000010"), 16u);
  EXPECT_EQ(parse_chunk_size("7fffffffffffffff"), 0x7fffffffffffffffu);
}

TEST(HttpParser, ChunkSizeExtensionsIgnored) {
  EXPECT_EQ(parse_chunk_size("5;name=value"), 5u);
  EXPECT_EQ(parse_chunk_size("5 ;name=\"quoted;value\""), 5u);
  EXPECT_EQ(parse_chunk_size("0;last"), 0u);
}

TEST(HttpParser, ChunkExtensionsOfEveryValidForm) {
  for (const char* good : {"5;name", "5;name=value", "5;name=\"quoted\"", "5;a;b=c;d=\"e\"",
                           "5 ; a = b", "5\t;a\t=\t\"x\"", "5;n=\"\"", "5;n=\"q\\\"x\"",
                           "5;n=\"tab\there\"", "5;n=\"obs\xe9text\"", "5;!#$%&'*+-.^_`|~=x"}) {
    SCOPED_TRACE(good);
    EXPECT_EQ(status_of([&] { EXPECT_EQ(parse_chunk_size(good), 5u); }), 0);
  }
}

TEST(HttpParser, MalformedChunkExtensionsAre400) {
  // A lenient parser skipping everything after ';' finds other chunk boundaries than a strict
  // one in front of or behind it (request smuggling): every deviation is refused.
  for (std::string_view bad :
       {"2;\nxx"sv,     "2;"sv,         "2; "sv,      "2;=v"sv,         "2;a="sv,
        "2;a= "sv,      "2;a=\"open"sv, "2;a=b c"sv,  "2;a b"sv,        "2;a=b;"sv,
        "2;a=\"x\"y"sv, "2;a=\"x\\"sv,  "2;a\x01"sv,  "2;a=\"x\ry\""sv, "2;a=\"x\ny\""sv,
        "2;a=b\n"sv,    "2;a=b\r"sv,    "2;a=\x7f"sv, "2;a=\"\x00\""sv, "2;a=\"\\\n\""sv,
        "2;a@b"sv,      "2 "sv,         "2\t"sv,      " 2"sv,           "\t2"sv,
        "2;a=b "sv}) {
    SCOPED_TRACE(testing::PrintToString(std::string(bad)));
    EXPECT_EQ(status_of([&] { parse_chunk_size(bad); }), 400);
  }
}

TEST(HttpParser, BadChunkSizesAre400) {
  for (const char* bad : {"", ";ext", "g", "-1", "+1", "0x10", "1 2", "5\r"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(status_of([&] { parse_chunk_size(bad); }), 400);
  }
}

TEST(HttpParser, ChunkSizeOverflowIs400) {
  EXPECT_EQ(status_of([] { parse_chunk_size("10000000000000000"); }), 400);  // 2^64
  EXPECT_EQ(status_of([] { parse_chunk_size("ffffffffffffffffff"); }), 400);
  EXPECT_EQ(status_of([] { parse_chunk_size("0000000000000000000000001"); }), 0);
}

TEST(HttpParser, DecodeChunkedWithTrailers) {
  std::string_view in = "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\nNEXT";
  std::size_t consumed = 0;
  EXPECT_EQ(decode_chunked(in, 1 << 20, consumed), "hello world");
  EXPECT_EQ(in.substr(consumed), "NEXT");
}

TEST(HttpParser, DecodeChunkedEmptyBody) {
  std::size_t consumed = 0;
  EXPECT_EQ(decode_chunked("0\r\n\r\n", 10, consumed), "");
  EXPECT_EQ(consumed, 5u);
}

TEST(HttpParser, DecodeChunkedHostileInputs) {
  std::size_t consumed = 0;
  auto status = [&](std::string_view in, std::size_t max = 1 << 20) {
    return status_of([&] { decode_chunked(in, max, consumed); });
  };
  EXPECT_EQ(status("5\r\nhelloXX0\r\n\r\n"), 400);            // data not followed by CRLF
  EXPECT_EQ(status("5\r\nhel"), 400);                         // cut short
  EXPECT_EQ(status("5\r\nhello\r\n"), 400);                   // no last chunk
  EXPECT_EQ(status("0\r\nX: 1\r\n"), 400);                    // trailers not terminated
  EXPECT_EQ(status("z\r\n\r\n"), 400);                        // bad size
  EXPECT_EQ(status("5\nhello\r\n0\r\n\r\n"), 400);            // bare LF after the size
  EXPECT_EQ(status(std::string(5000, '1') + "\r\n"), 400);    // overlong size line
  EXPECT_EQ(status("fffffffffffff\r\nx\r\n0\r\n\r\n"), 413);  // larger than max_body
  EXPECT_EQ(status("6\r\nhello!\r\n0\r\n\r\n", 5), 413);
  EXPECT_EQ(status("3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n", 5), 413);  // total over max_body
  EXPECT_EQ(status("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", 5), 0);     // exactly max_body
}

TEST(HttpParser, DecodeChunkedTrailersAreCheckedAsFieldLines) {
  std::size_t consumed = 0;
  auto status = [&](std::string_view trailers) {
    return status_of([&] { decode_chunked("0\r\n" + std::string(trailers), 1 << 20, consumed); });
  };
  EXPECT_EQ(status("X-Ok: 1\r\nY:\r\n\r\n"), 0);
  EXPECT_EQ(status("Bad Name: 1\r\n\r\n"), 400);
  EXPECT_EQ(status("NoColon\r\n\r\n"), 400);
  EXPECT_EQ(status("X: 1\r\n folded\r\n\r\n"), 400);
  EXPECT_EQ(status("X: a\x01"
                   "b\r\n\r\n"),
            400);
  EXPECT_EQ(status("X: a\0b\r\n\r\n"sv), 400);
  EXPECT_EQ(status("X: 1\nY: 2\r\n\r\n"), 400);  // bare LF inside a trailer line
  EXPECT_EQ(status("X: 1\rY: 2\r\n\r\n"), 400);  // bare CR
}

TEST(HttpParser, AtMost100TrailerFieldsOfAtMost8KiB) {
  std::size_t consumed = 0;
  auto trailers = [](int n) {
    std::string out = "0\r\n";
    // Appended piece by piece: g++ 12 -O2 warns (-Wrestrict, a false positive, GCC PR105329)
    // on "T" + std::to_string(i).
    for (int i = 0; i < n; ++i) out.append("T").append(std::to_string(i)).append(": v\r\n");
    return out + "\r\n";
  };
  EXPECT_EQ(status_of([&] { decode_chunked(trailers(100), 10, consumed); }), 0);
  EXPECT_EQ(status_of([&] { decode_chunked(trailers(101), 10, consumed); }), 431);
  std::string longest = "X: " + std::string(max_trailer_line - 3, 'v');
  EXPECT_EQ(status_of([&] { decode_chunked("0\r\n" + longest + "\r\n\r\n", 10, consumed); }), 0);
  EXPECT_EQ(status_of([&] { decode_chunked("0\r\n" + longest + "v\r\n\r\n", 10, consumed); }), 431);
}

// --- responses ---------------------------------------------------------------------------

TEST(HttpParser, ResponseHead) {
  response_head r =
      parse_response_head("HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nX: y\r\n\r\n");
  EXPECT_EQ(r.version_minor, 1);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.reason, "Not Found");
  EXPECT_EQ(*r.headers.get("content-length"), "3");
}

TEST(HttpParser, ResponseHeadVariants) {
  EXPECT_EQ(parse_response_head("HTTP/1.0 200 OK\r\n\r\n").version_minor, 0);
  EXPECT_EQ(parse_response_head("HTTP/1.1 204\r\n\r\n").reason, "");   // no reason phrase
  EXPECT_EQ(parse_response_head("HTTP/1.1 200 \r\n\r\n").reason, "");  // empty reason
  EXPECT_EQ(parse_response_head("HTTP/1.1 200 OK\nA: b\n\n").headers.count("A"), 1u);  // bare LF
  EXPECT_EQ(parse_response_head("HTTP/1.1 599 Custom Thing\r\n\r\n").reason, "Custom Thing");
}

TEST(HttpParser, BadResponseHeads) {
  auto status = [](std::string_view head) { return status_of([&] { parse_response_head(head); }); };
  EXPECT_EQ(status("HTTP/1.1 20 OK\r\n\r\n"), 400);
  EXPECT_EQ(status("HTTP/1.1 2000 OK\r\n\r\n"), 400);
  EXPECT_EQ(status("HTTP/1.1 abc OK\r\n\r\n"), 400);
  EXPECT_EQ(status("HTTP/1.1 099 OK\r\n\r\n"), 400);
  EXPECT_EQ(status("HTTP/2.0 200 OK\r\n\r\n"), 505);
  EXPECT_EQ(status("ICY 200 OK\r\n\r\n"), 400);
  EXPECT_EQ(status("HTTP/1.1 200 OK\r\nX : y\r\n\r\n"), 400);
  // Whitespace before the first field (RFC 9112 §2.2: reject, or ignore the line).
  EXPECT_EQ(status("HTTP/1.1 200 OK\r\n X: y\r\n\r\n"), 400);
  EXPECT_EQ(status("HTTP/1.1 200 OK\r\nX: y\r\n z\x01\r\n\r\n"), 400);  // control byte in a fold
}

TEST(HttpParser, ObsFoldInResponsesIsUnfoldedToOneSpace) {
  // RFC 9112 §5.2: a user agent replaces each obs-fold with SP before using the value.
  response_head r = parse_response_head(
      "HTTP/1.1 200 OK\r\nX: a  \r\n  b\r\n\tc\t\r\nY: 1\r\nZ:\r\n z\r\nW: w\r\n \r\n\r\n");
  ASSERT_EQ(r.headers.fields().size(), 4u);
  EXPECT_EQ(*r.headers.get("X"), "a b c");
  EXPECT_EQ(*r.headers.get("Y"), "1");
  EXPECT_EQ(*r.headers.get("Z"), "z");
  EXPECT_EQ(*r.headers.get("W"), "w");  // a blank continuation adds nothing
  // Bare LF line ends, as the client tolerates them from servers.
  EXPECT_EQ(*parse_response_head("HTTP/1.1 200 OK\nX: a\n b\n\n").headers.get("X"), "a b");
  // Requests keep being refused (a server may reject it, §5.2).
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"), 400);
}

TEST(HttpParser, ResponseFramingWithoutBody) {
  headers with_length = fields({{"Content-Length", "10"}});
  EXPECT_EQ(response_framing(with_length, 200, "HEAD").kind, body_kind::none);
  EXPECT_EQ(response_framing(with_length, 204, "GET").kind, body_kind::none);
  EXPECT_EQ(response_framing(with_length, 304, "GET").kind, body_kind::none);
  EXPECT_EQ(response_framing(headers(), 100, "GET").kind, body_kind::none);
  EXPECT_EQ(response_framing(fields({{"Transfer-Encoding", "chunked"}}), 204, "GET").kind,
            body_kind::none);
}

TEST(HttpParser, ResponseFramingWithBody) {
  body_framing f = response_framing(fields({{"Content-Length", "10"}}), 200, "GET");
  EXPECT_EQ(f.kind, body_kind::length);
  EXPECT_EQ(f.length, 10u);
  EXPECT_EQ(response_framing(fields({{"Content-Length", "0"}}), 200, "GET").kind,
            body_kind::length);
  EXPECT_EQ(response_framing(fields({{"Transfer-Encoding", "chunked"}}), 200, "GET").kind,
            body_kind::chunked);
  EXPECT_EQ(response_framing(fields({{"Transfer-Encoding", "gzip, chunked"}}), 200, "GET").kind,
            body_kind::chunked);
  // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3).
  EXPECT_EQ(response_framing(fields({{"Transfer-Encoding", "chunked"}, {"Content-Length", "3"}}),
                             200, "POST")
                .kind,
            body_kind::chunked);
  EXPECT_EQ(response_framing(headers(), 200, "GET").kind, body_kind::until_close);
  EXPECT_EQ(response_framing(fields({{"Transfer-Encoding", "gzip"}}), 200, "GET").kind,
            body_kind::until_close);
}

TEST(HttpParser, ResponseFramingBadContentLength) {
  auto status = [](const headers& h) {
    return status_of([&] { response_framing(h, 200, "GET"); });
  };
  EXPECT_EQ(status(fields({{"Content-Length", "-1"}})), 400);
  EXPECT_EQ(status(fields({{"Content-Length", "abc"}})), 400);
  EXPECT_EQ(status(fields({{"Content-Length", "3"}, {"Content-Length", "4"}})), 400);
  // Identical repeats are tolerated from servers (RFC 9110 §8.6).
  EXPECT_EQ(status(fields({{"Content-Length", "3"}, {"Content-Length", "3"}})), 0);
}

TEST(HttpParser, HeadWithBytesAfterItsEmptyLineRejected) {
  // The caller read all of it as the head: fields after an earlier empty line were dropped.
  EXPECT_EQ(status_of([] { parse_response_head("HTTP/1.1 200 OK\nContent-Length: 2\n\r\n\r\n"); }),
            400);
  EXPECT_EQ(status_of([] { parse_response_head("HTTP/1.1 200 OK\n\nX: y\r\n\r\n"); }), 400);
  EXPECT_EQ(request_status("GET / HTTP/1.1\r\nHost: h\r\n\r\nX: y\r\n\r\n"), 400);
}

TEST(HttpParser, ControlBytesInReasonPhraseRejected) {
  auto status = [](std::string_view head) { return status_of([&] { parse_response_head(head); }); };
  EXPECT_EQ(status("HTTP/1.1 200 O\x01K\r\n\r\n"), 400);
  EXPECT_EQ(status("HTTP/1.1 200 OK\0\r\n\r\n"sv), 400);
  EXPECT_EQ(status("HTTP/1.1 200 O\rK\n\n"), 400);  // bare CR (LF line ends are tolerated)
  EXPECT_EQ(status("HTTP/1.1 200 OK\x7f\r\n\r\n"), 400);
  EXPECT_EQ(parse_response_head("HTTP/1.1 200 O\tK \xe9\r\n\r\n").reason, "O\tK \xe9");  // obs-text
}

// --- URLs: parse_url and a redirect's Location (lib/http/url.hpp) --------------------------

TEST(HttpUrl, BracketsOnlyEncloseAnIpv6Host) {
  // RFC 3986 §3.2.2: '[' and ']' delimit an IP literal; no host holds them. "http://[[a]/"
  // gave the host "[a", whose origin "http://[a:80" parse_url then refused (a redirect to "/x"
  // failed), and "Host: [a" was sent. Found by fuzz_url.
  EXPECT_THROW(parse_url("http://[[a]/"), std::invalid_argument);
  EXPECT_THROW(parse_url("http://ex]mple/"), std::invalid_argument);
  EXPECT_THROW(parse_url("http://a[b:81/"), std::invalid_argument);
  EXPECT_THROW(parse_url("http://[::1]]:80/"), std::invalid_argument);
  const url_parts v6 = parse_url("http://[::1]:8080/x");
  EXPECT_EQ(v6.host, "::1");
  EXPECT_EQ(v6.port, 8080);
  EXPECT_EQ(parse_url(resolve_location(v6, "/y")).host, "::1");
}

TEST(HttpUrl, AnIpv6HostNeedsBrackets) {
  // RFC 3986 §3.2.2: an IPv6 address is written in brackets; a host name holds no ':'.
  // "http://::1/" was read as host ":" and port 1 (then a failed name lookup), "http://a:b:80/"
  // as host "a:b". Found by fuzz_url.
  EXPECT_THROW(parse_url("http://::1/"), std::invalid_argument);
  EXPECT_THROW(parse_url("http://a:b:80/"), std::invalid_argument);
  EXPECT_THROW(parse_url("https://2001:db8::1/x"), std::invalid_argument);
  EXPECT_EQ(parse_url("http://[::1]/").host, "::1");
  EXPECT_EQ(parse_url("http://[2001:db8::1]:81/").port, 81);
  EXPECT_EQ(parse_url("http://a:81/").host, "a");
}

TEST(HttpUrl, PortZeroIsRefused) {
  // TCP has no port 0 to connect to; "http://h:0/" was accepted and failed only at the
  // connect, with a connection error instead of invalid_argument. Found by fuzz_url.
  EXPECT_THROW(parse_url("http://h:0/"), std::invalid_argument);
  EXPECT_THROW(parse_url("https://[::1]:000/x"), std::invalid_argument);
  EXPECT_THROW(parse_url("http://h:65536/"), std::invalid_argument);
  EXPECT_EQ(parse_url("http://h:1/").port, 1);
  EXPECT_EQ(parse_url("http://h:0080/").port, 80);
  EXPECT_EQ(parse_url("http://h:65535/").port, 65535);
  EXPECT_EQ(parse_url("https://h:/").port, 443);  // RFC 3986 §3.2.3: empty is the default
}

TEST(HttpUrl, LocationWithAnotherSchemeIsNotAPath) {
  // RFC 3986 §4.2, §5.2.2: a reference with a scheme is absolute. "ftp://x/f" and
  // "mailto:a@b" were read as relative paths ("http://h:80/dir/ftp://x/f"), and so was
  // "http://" alone; parse_url now refuses them ("unsupported URL"). Found by fuzz_url.
  const url_parts base = parse_url("http://h/dir/page?q");
  EXPECT_EQ(resolve_location(base, "ftp://other/f"), "ftp://other/f");
  EXPECT_EQ(resolve_location(base, "mailto:a@b#x"), "mailto:a@b");
  EXPECT_EQ(resolve_location(base, "http://"), "http://");
  EXPECT_EQ(resolve_location(base, "HTTP:/x"), "HTTP:/x");
  EXPECT_THROW(parse_url(resolve_location(base, "ftp://other/f")), std::invalid_argument);
  // Not a scheme: relative paths and the other relative forms, as before.
  EXPECT_EQ(resolve_location(base, "next:page"), "next:page");  // RFC 3986 §4.2: a scheme
  EXPECT_EQ(resolve_location(base, "./a:b"), "http://h:80/dir/./a:b");
  EXPECT_EQ(resolve_location(base, "1a:b"), "http://h:80/dir/1a:b");  // not ALPHA first
  EXPECT_EQ(resolve_location(base, "a/b:c"), "http://h:80/dir/a/b:c");
  EXPECT_EQ(resolve_location(base, "next"), "http://h:80/dir/next");
  EXPECT_EQ(resolve_location(base, "?r"), "http://h:80/dir/page?r");
  EXPECT_EQ(resolve_location(base, "/x"), "http://h:80/x");
  EXPECT_EQ(resolve_location(base, "//o:90/y"), "http://o:90/y");
  EXPECT_EQ(resolve_location(base, "HTTPS://o/y#f"), "HTTPS://o/y");
}

// --- the client reading a response off its connection (lib/http/response_reader.hpp) --------

class ClientResponseRead : public corio::testing::backend_test {};

/// Sends `wire` from a server that keeps the connection open, then reads one response for
/// `method` as the client does; `rest` gets what the server sends afterwards, if asked.
task<received_response> read_from(std::string wire, std::string method, std::string* rest) {
  auto pair = corio::stream_pair();
  corio::stream& client = pair.first;
  corio::stream& server = pair.second;
  co_await server.write(wire);
  client_options o;
  std::string head = co_await with_timeout(2s, read_response_head(client, o));
  received_response r =
      co_await with_timeout(2s, read_response(client, std::move(head), method, o));
  if (rest != nullptr) {
    server.close();
    *rest = co_await with_timeout(2s, client.read_until_close());
  }
  co_return r;
}

TEST_P(ClientResponseRead, BareLfHeadEndsAtItsFirstEmptyLine) {
  // A head with LF line ends (RFC 9112 §2.2) ends at "\n\n": the client waited for a
  // "\r\n\r\n" that never came.
  received_response r = run(read_from("HTTP/1.1 200 OK\nContent-Length: 2\n\nhi", "GET", nullptr));
  EXPECT_EQ(r.response.status, 200);
  EXPECT_EQ(r.response.body, "hi");
  EXPECT_TRUE(r.reusable);
}

TEST_P(ClientResponseRead, MixedLineEndsHeadEndsAtItsFirstEmptyLine) {
  // "\n\r\n" ends the head: reading on to the next "\r\n\r\n" took the body and the next
  // response for the head, whose parse dropped them, and then waited for a body.
  std::string rest;
  received_response r = run(
      read_from("HTTP/1.1 200 OK\r\nContent-Length: 5\n\r\nhelloHTTP/1.1 204 No Content\r\n\r\n",
                "GET", &rest));
  EXPECT_EQ(r.response.status, 200);
  EXPECT_EQ(r.response.body, "hello");
  EXPECT_EQ(rest, "HTTP/1.1 204 No Content\r\n\r\n");
}

TEST_P(ClientResponseRead, Http10WithTransferEncodingIsNotReused) {
  // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing; the
  // connection is closed after it, even with keep-alive (as the server does for requests).
  received_response r = run(
      read_from("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
                "1\r\na\r\n0\r\n\r\n",
                "GET", nullptr));
  EXPECT_EQ(r.response.body, "a");
  EXPECT_FALSE(r.reusable);
  // The same framed by Content-Length is kept alive.
  received_response k = run(read_from(
      "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\na", "GET", nullptr));
  EXPECT_TRUE(k.reusable);
}

TEST_P(ClientResponseRead, ObsFoldedFieldIsUnfoldedAndFramesTheBody) {
  // A folded field, Content-Length after it, the body and the next response: each fold line
  // is one line of the head, not its end; the unfolded value is what the caller sees.
  std::string rest;
  received_response r =
      run(read_from("HTTP/1.1 200 OK\r\nX-Long: part one\r\n part two\r\n\tpart three\r\n"
                    "Content-Length: 2\r\n\r\nhiHTTP/1.1 204 No Content\r\n\r\n",
                    "GET", &rest));
  EXPECT_EQ(r.response.status, 200);
  EXPECT_EQ(*r.response.headers.get("X-Long"), "part one part two part three");
  EXPECT_EQ(r.response.body, "hi");
  EXPECT_EQ(rest, "HTTP/1.1 204 No Content\r\n\r\n");
  // Bare LF line ends with a fold.
  received_response l =
      run(read_from("HTTP/1.1 200 OK\nX: a\n b\nContent-Length: 1\n\nz", "GET", nullptr));
  EXPECT_EQ(*l.response.headers.get("X"), "a b");
  EXPECT_EQ(l.response.body, "z");
}

CORIO_INSTANTIATE_BACKENDS(ClientResponseRead);

}  // namespace
