// libFuzzer: the HTTP client's response reading (lib/http/response_reader.hpp: status line,
// headers, 1xx interim responses (at most max_interim_responses), then the body by
// Content-Length, chunked, until close, or none for HEAD/204/304), run on a real stream pair
// against a reference reader over the whole buffer, and again with the response cut
// differently; checks invariants, not only "does not crash".
//
// Input: byte 0 picks the backend (bit 0: epoll), the request method (bits 1-2: GET, HEAD,
// POST, GET), the second run's read_chunk_size (bits 3-5) and max_body_bytes (bits 6-7);
// byte 1 seeds the second run's peer write sizes; the rest is what the server sends, after
// which it closes the connection.
//
// Checks, on every input:
//  - every head the parser accepts: status 100..999, version 1.0 or 1.1, field names are
//    tokens, field values hold no control byte (CR, LF, NUL...) nor outer whitespace, the
//    reason phrase no control byte, and every line of the head read is one field or an
//    obs-fold continuing one (nothing ignored; a head ends at its first empty line, LF or
//    CRLF line ends alike; a fold is unfolded to SP, RFC 9112 §5.2, so no value holds a
//    line end);
//  - the framing: none for HEAD, 1xx, 204 and 304; Content-Length never frames a body that
//    Transfer-Encoding also names; a length body is exactly Content-Length bytes;
//  - the client's result (response, error kind and status, bytes left on the stream) equals
//    the reference reader's (for a failed chunked body only that it failed: the reference
//    decodes from memory and reports a cut as 400), and is the same when the bytes arrive
//    whole or in fuzzer-chosen pieces with a tiny read_chunk_size (differential);
//  - a connection is reused only when RFC 9112 allows it (framed body, no Connection: close,
//    HTTP/1.0 only with keep-alive, never after both Content-Length and Transfer-Encoding or
//    a Transfer-Encoding in HTTP/1.0, §6.1 and §6.3).
// On a failure the target prints why and aborts, so libFuzzer keeps the input. Reproduce:
// build/fuzz/test/fuzz_http_response <file>. Seeds: 2 bytes of config, then the response.
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "corio/corio.hpp"
#include "http/parser.hpp"
#include "http/response_reader.hpp"
#include "support/fuzz_leak_check.hpp"

using namespace corio;
using namespace std::chrono_literals;
namespace hd = corio::http::detail;

namespace {

std::string printable(std::string_view s, std::size_t max = 300) {
  std::string out;
  for (unsigned char c : s.substr(0, max)) {
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

std::string_view input_text;  // for failure messages

[[noreturn]] void fail(const std::string& why) {
  std::fprintf(stderr, "http_response: INVARIANT: %s\ninput: \"%s\"\n", why.c_str(),
               printable(input_text, 2000).c_str());
  std::abort();
}

/// What reading one response gave: the response, or how it failed; and what stayed unread.
struct outcome {
  enum kind_t { ok, protocol, closed, other } kind = other;
  int error_status = 0;  // protocol_error's status
  std::string what;
  http::client_response response;
  bool reusable = false;
  std::string rest;  // bytes after the response (ok only)
};

std::string describe(const outcome& o) {
  switch (o.kind) {
    case outcome::ok:
      return "response " + std::to_string(o.response.status) + " \"" +
             printable(o.response.reason) + "\" body \"" + printable(o.response.body) + "\" (" +
             std::to_string(o.response.body.size()) + " bytes), " +
             std::to_string(o.response.headers.fields().size()) + " fields, rest \"" +
             printable(o.rest) + "\"" + (o.reusable ? ", reusable" : "");
    case outcome::protocol:
      return "protocol_error " + std::to_string(o.error_status) + ": " + o.what;
    case outcome::closed:
      return "stream_closed_error: " + o.what;
    case outcome::other:
      return "other error: " + o.what;
  }
  return "?";
}

bool is_tchar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

bool has_control(std::string_view s) {
  for (unsigned char c : s) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) return true;
  }
  return false;
}

/// Invariants of a head parse_response_head accepted; `head` ends at its first empty line.
void check_head(std::string_view head, const hd::response_head& h) {
  if (h.status < 100 || h.status > 999) fail("status out of range");
  if (h.version_minor != 0 && h.version_minor != 1) fail("version_minor not 0 or 1");
  if (has_control(h.reason)) fail("control byte in the reason phrase");
  for (const auto& [name, value] : h.headers.fields()) {
    if (name.empty()) fail("empty field name");
    for (unsigned char c : name) {
      if (!is_tchar(c)) fail("field name \"" + printable(name) + "\" is not a token");
    }
    if (has_control(value)) fail("control byte in the value of " + printable(name));
    if (!value.empty() && (value.front() == ' ' || value.front() == '\t' || value.back() == ' ' ||
                           value.back() == '\t')) {
      fail("field value not trimmed: \"" + printable(value) + "\"");
    }
  }
  // Every line of the head read is the status line, a field, an obs-fold (a line starting
  // with SP or HTAB, which continues the field before it: RFC 9112 §5.2) or the final empty
  // line: a parser that stops at an earlier empty line would ignore fields the client
  // consumed.
  std::size_t lines = 0, folds = 0;
  for (std::size_t i = 0; i < head.size(); ++i) {
    if (head[i] != '\n') continue;
    ++lines;
    if (i + 1 < head.size() && (head[i + 1] == ' ' || head[i + 1] == '\t')) ++folds;
  }
  if (h.headers.fields().size() + folds + 2 != lines) {
    fail("the head has " + std::to_string(lines) + " lines (" + std::to_string(folds) +
         " of them obs-folds) but " + std::to_string(h.headers.fields().size()) +
         " fields were parsed");
  }
}

/// Invariants of the framing response_framing chose.
void check_framing(const http::headers& f, int status, std::string_view method,
                   const hd::body_framing& b) {
  const bool no_body =
      method == "HEAD" || (status >= 100 && status < 200) || status == 204 || status == 304;
  if (no_body && b.kind != hd::body_kind::none) fail("a body for HEAD, 1xx, 204 or 304");
  const bool te = f.count("Transfer-Encoding") > 0, cl = f.count("Content-Length") > 0;
  if (b.kind == hd::body_kind::length) {
    if (te) fail("Content-Length framing despite Transfer-Encoding");
    if (!cl) fail("length framing without Content-Length");
    for (const auto& [name, value] : f.fields()) {
      std::uint64_t n = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (http::iequals(name, "Content-Length") &&
          (ec != std::errc() || end != value.data() + value.size() || n != b.length)) {
        fail("framing length " + std::to_string(b.length) + " but Content-Length \"" +
             printable(value) + "\"");
      }
    }
  }
  if (b.kind == hd::body_kind::chunked && !te) fail("chunked framing without Transfer-Encoding");
}

/// Whether RFC 9112 lets the connection carry another request after this response.
bool may_reuse(const http::client_response& r, const hd::body_framing& b) {
  const bool te = r.headers.count("Transfer-Encoding") > 0;
  const bool cl = r.headers.count("Content-Length") > 0;
  if (b.kind == hd::body_kind::until_close || r.status == 101) return false;
  if (te && (cl || r.version_minor == 0)) return false;  // §6.1, §6.3: faulty framing
  return r.version_minor == 1 ? !r.headers.has_token("Connection", "close")
                              : r.headers.has_token("Connection", "keep-alive");
}

/// Where the head starting at `pos` ends: after its first empty line, a line end being LF
/// or CRLF (RFC 9112 §2.2: the client tolerates a bare LF); npos if it does not end.
std::size_t head_end(std::string_view in, std::size_t pos) {
  if (in.substr(pos, 1) == "\n") return pos + 1;  // an empty first line (a malformed head)
  if (in.substr(pos, 2) == "\r\n") return pos + 2;
  for (std::size_t lf = in.find('\n', pos); lf != std::string_view::npos;
       lf = in.find('\n', lf + 1)) {
    if (in.substr(lf + 1, 1) == "\n") return lf + 2;
    if (in.substr(lf + 1, 2) == "\r\n") return lf + 3;
  }
  return std::string_view::npos;
}

/// The reference: reads a response from the whole input in memory with the parser's entry
/// points, as the client does on its stream; also checks the head and framing invariants.
outcome reference(std::string_view in, const std::string& method, std::size_t max_body,
                  int max_interim, hd::body_framing& framing) {
  outcome o;
  std::size_t pos = 0;
  try {
    hd::response_head h;
    for (int interim = 0;; ++interim) {
      if (interim > max_interim) {
        throw http::protocol_error(400, "more than max_interim_responses interim responses");
      }
      std::size_t end = head_end(in, pos);
      if (end == std::string_view::npos) {
        o.kind = outcome::closed;
        o.what = "no complete head";
        return o;
      }
      std::string_view head = in.substr(pos, end - pos);
      pos = end;
      h = hd::parse_response_head(head);
      check_head(head, h);
      if (h.status >= 200 || h.status == 101) break;
    }
    framing = hd::response_framing(h.headers, h.status, method);
    check_framing(h.headers, h.status, method, framing);
    o.response.status = h.status;
    o.response.reason = h.reason;
    o.response.version_minor = h.version_minor;
    o.response.headers = h.headers;
    std::string_view rest = in.substr(pos);
    switch (framing.kind) {
      case hd::body_kind::none:
        break;
      case hd::body_kind::length:
        if (framing.length > max_body) throw http::protocol_error(413, "length past max_body");
        if (rest.size() < framing.length) {
          o.kind = outcome::closed;
          o.what = "length body cut short";
          return o;
        }
        o.response.body = rest.substr(0, framing.length);
        pos += framing.length;
        break;
      case hd::body_kind::until_close:
        if (rest.size() > max_body) throw http::protocol_error(413, "close body past max_body");
        o.response.body = rest;
        pos = in.size();
        break;
      case hd::body_kind::chunked: {
        std::size_t consumed = 0;
        o.response.body = hd::decode_chunked(rest, max_body, consumed);
        pos += consumed;
        break;
      }
    }
  } catch (const http::protocol_error& e) {
    o.kind = outcome::protocol;
    o.error_status = e.status();
    o.what = e.what();
    return o;
  }
  o.kind = outcome::ok;
  o.rest = in.substr(pos);
  o.reusable = may_reuse(o.response, framing);
  return o;
}

/// The server: sends `in` in pieces (sizes from `seed`; 0: all at once), then closes.
task<void> serve(stream& peer, std::string_view in, std::uint8_t seed) {
  try {
    std::uint32_t state = seed * 2654435761u + 1;
    std::size_t pos = 0;
    while (pos < in.size()) {
      std::size_t n = in.size() - pos;
      if (seed != 0) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        n = std::min<std::size_t>(n, 1 + state % ((seed & 0x0f) * 8 + 1));
      }
      co_await peer.write(in.substr(pos, n));
      pos += n;
      if (seed != 0) co_await sleep_for(0ns);  // let the client read this piece alone
    }
  } catch (const corio::error&) {
    // The client closed its end first (a read past max_bytes closes the stream, S16).
  }
  peer.close();
}

/// The client: the same calls as client.cpp's exchange(), then whatever the stream still holds.
task<void> read_one(stream& s, const std::string& method, const http::client_options& o,
                    outcome& out) {
  try {
    std::string head = co_await hd::read_response_head(s, o);
    hd::received_response r = co_await hd::read_response(s, std::move(head), method, o);
    out.response = std::move(r.response);
    out.reusable = r.reusable;
    out.kind = outcome::ok;
  } catch (const http::protocol_error& e) {
    out.kind = outcome::protocol;
    out.error_status = e.status();
    out.what = e.what();
  } catch (const stream_closed_error& e) {
    out.kind = outcome::closed;
    out.what = e.what();
  } catch (const std::exception& e) {
    out.kind = outcome::other;
    out.what = e.what();
  }
  if (out.kind != outcome::ok) {
    // As the client drops a connection that failed: a server still sending then gets an
    // error instead of waiting for room forever (a socket pair holds a few hundred writes).
    s.close();
  } else {
    try {
      out.rest = co_await s.read_until_close();
    } catch (const std::exception& e) {
      out.kind = outcome::other;
      out.what = std::string("read_until_close after the response: ") + e.what();
    }
  }
}

task<void> exchange(std::string_view in, std::uint8_t seed, stream_options so,
                    const std::string& method, const http::client_options& o, outcome& out) {
  auto [client, server] = stream_pair(so);
  co_await when_all(read_one(client, method, o, out), serve(server, in, seed));
}

std::unique_ptr<event_loop> make_loop(bool epoll) {
  loop_options o;
  o.backend = epoll ? backend::epoll : backend::io_uring;
  try {
    return std::make_unique<event_loop>(o);
  } catch (const backend_unavailable_error&) {
    o.backend = backend::epoll;
    return std::make_unique<event_loop>(o);
  }
}

/// The loop of a backend, made once and reused by every input.
event_loop& shared_loop(bool epoll) {
  static std::unique_ptr<event_loop> loops[2];
  auto& l = loops[epoll ? 1 : 0];
  if (!l) l = make_loop(epoll);
  return *l;
}

outcome run(event_loop& loop, std::string_view in, std::uint8_t seed, stream_options so,
            const std::string& method, const http::client_options& o) {
  outcome out;
  try {
    loop.run(exchange(in, seed, so, method, o, out));
  } catch (const std::exception& e) {
    fail(std::string("the exchange failed: ") + e.what());
  }
  return out;
}

/// The same result: a mismatch in anything the caller sees. `exact_errors`: the same error
/// kind and status too (the chunked reference decodes from memory and reports a cut as 400).
void compare(const outcome& a, const outcome& b, bool exact_errors, bool compare_reuse,
             const char* what) {
  auto mismatch = [&](const std::string& field) {
    fail(std::string(what) + ": " + field + " differs:\n  " + describe(a) + "\n  " + describe(b));
  };
  if ((a.kind == outcome::ok) != (b.kind == outcome::ok)) mismatch("success");
  if (a.kind != outcome::ok) {
    if (exact_errors && (a.kind != b.kind || a.error_status != b.error_status)) {
      mismatch("error");
    }
    return;
  }
  const auto &x = a.response, &y = b.response;
  if (x.status != y.status || x.reason != y.reason || x.version_minor != y.version_minor) {
    mismatch("status line");
  }
  if (x.headers.fields() != y.headers.fields()) mismatch("headers");
  if (x.body != y.body) mismatch("body");
  if (a.rest != b.rest) mismatch("bytes after the response");
  if (compare_reuse && a.reusable != b.reusable) mismatch("reusable");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  static constexpr std::size_t chunk_sizes[8] = {0, 1, 2, 3, 7, 16, 100, 4096};
  static constexpr std::size_t max_bodies[4] = {256 << 20, 0, 16, 1000};
  static const std::string methods[4] = {"GET", "HEAD", "POST", "GET"};
  const std::uint8_t config = data[0], seed = data[1];
  std::string_view in(reinterpret_cast<const char*>(data + 2), size - 2);
  input_text = in;
  const std::string& method = methods[(config >> 1) & 3];
  http::client_options o;
  o.max_body_bytes = max_bodies[config >> 6];
  event_loop& loop = shared_loop(config & 1);

  hd::body_framing framing;
  outcome ref = reference(in, method, o.max_body_bytes, o.max_interim_responses, framing);

  // Run A: everything at once, default stream options.
  outcome a = run(loop, in, 0, stream_options{}, method, o);
  // Run B: fuzzer-chosen pieces and a tiny read_chunk_size.
  stream_options small;
  small.read_chunk_size = chunk_sizes[(config >> 3) & 7];
  outcome b = run(loop, in, seed | 1, small, method, o);

  for (const outcome* x : {&a, &b}) {
    if (x->kind == outcome::other) fail("unexpected exception: " + x->what);
    if (x->kind != outcome::ok) continue;
    const auto& r = x->response;
    // A stream closed by the peer's EOF once the body was read is not reused: a legitimate
    // extra reason, so only "reused although RFC 9112 forbids it" is a failure.
    if (x->reusable && !ref.reusable) fail("reusable against RFC 9112: " + describe(*x));
    if (ref.kind == outcome::ok && framing.kind == hd::body_kind::length &&
        r.body.size() != framing.length) {
      fail("Content-Length " + std::to_string(framing.length) + " but " +
           std::to_string(r.body.size()) + " body bytes");
    }
  }
  // `framing` is set once the reference reached the body.
  compare(ref, a, framing.kind != hd::body_kind::chunked, false, "reference vs whole");
  compare(a, b, true, false, "whole vs pieces");
  return 0;
}

// Pools outlive an input: no per-input leak scan (support/fuzz_leak_check.hpp).
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  corio::testing::disable_per_input_leak_check(argc, argv);
  return 0;
}
