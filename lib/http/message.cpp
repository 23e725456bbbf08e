// HTTP messages: header fields, request body reading, response helpers.
#include "corio/http/message.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <span>
#include <string>
#include <system_error>

#include "corio/stream.hpp"
#include "corio/timeout.hpp"
#include "http/connection.hpp"

namespace corio::http {

bool iequals(std::string_view a, std::string_view b) noexcept {
  // ASCII case folding (RFC 9110 field names and tokens), not the locale's: std::tolower is
  // a call per byte and would also fold bytes above 0x7f in some locales.
  auto fold = [](char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (fold(a[i]) != fold(b[i])) return false;
  }
  return true;
}

void headers::add(std::string name, std::string value) {
  fields_.emplace_back(std::move(name), std::move(value));
}

void headers::set(std::string_view name, std::string value) {
  remove(name);
  fields_.emplace_back(std::string(name), std::move(value));
}

void headers::remove(std::string_view name) {
  std::erase_if(fields_, [&](const field& f) { return iequals(f.first, name); });
}

std::optional<std::string_view> headers::get(std::string_view name) const {
  for (const field& f : fields_) {
    if (iequals(f.first, name)) return std::string_view(f.second);
  }
  return std::nullopt;
}

std::size_t headers::count(std::string_view name) const {
  return static_cast<std::size_t>(std::count_if(
      fields_.begin(), fields_.end(), [&](const field& f) { return iequals(f.first, name); }));
}

bool headers::has_token(std::string_view name, std::string_view token) const {
  for (const field& f : fields_) {
    if (!iequals(f.first, name)) continue;
    std::string_view rest = f.second;
    while (!rest.empty()) {
      std::size_t comma = rest.find(',');
      std::string_view item = rest.substr(0, comma);
      while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
      while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
      if (iequals(item, token)) return true;
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return false;
}

namespace {
/// Where the path of an absolute-form target ("http://host:8080/a?b", which a server must
/// accept, RFC 9112 §3.2.2, and which proxies send) begins: after its authority. npos if
/// `t` is not in absolute form.
std::size_t absolute_form_path(std::string_view t) noexcept {
  std::size_t scheme_end = 0;
  if (iequals(t.substr(0, 7), "http://")) {
    scheme_end = 7;
  } else if (iequals(t.substr(0, 8), "https://")) {
    scheme_end = 8;
  } else {
    return std::string_view::npos;
  }
  return std::min(t.find_first_of("/?", scheme_end), t.size());
}

/// The origin-form part of a target: "/a?b" whether sent so or as "http://host/a?b".
std::string_view origin_form(std::string_view t) noexcept {
  const std::size_t path = absolute_form_path(t);
  return path == std::string_view::npos ? t : t.substr(path);
}
}  // namespace

std::string_view request::path() const noexcept {
  std::string_view t = origin_form(target);
  t = t.substr(0, t.find('?'));
  // "http://host" and "http://host?q" name the path "/" (RFC 9112 §3.2.1).
  if (t.empty() && absolute_form_path(target) != std::string_view::npos) return "/";
  return t;
}

std::string_view request::query() const noexcept {
  std::string_view t = origin_form(target);
  std::size_t q = t.find('?');
  return q == std::string_view::npos ? std::string_view() : t.substr(q + 1);
}

task<std::string_view> request::read_body() {
  if (body_read || connection == nullptr) co_return std::string_view(body);
  connection_state& c = *connection;
  // Why not after the final head: it would land in the body (a chunked producer reading
  // it), where the client reads it as a chunk-size line. The client, which got a final answer
  // instead of 100 Continue, may still send the body (RFC 9110 §10.1.1); it is read as is.
  if (c.expect_continue && !c.continue_sent && !c.final_head_sent) {
    c.continue_sent = true;
    c.stream->write("HTTP/1.1 100 Continue\r\n\r\n");
  }
  // A slow body is the client's fault (408), also when a handler reads it after 100 Continue:
  // a timeout_error escaping the handler would become a 500.
  std::exception_ptr failure;
  try {
    body =
        co_await with_timeout(c.options->body_timeout,
                              detail::read_body(*c.stream, c.framing, c.options->max_body_bytes));
  } catch (const timeout_error&) {
    failure = std::make_exception_ptr(
        protocol_error(408, "HTTP: the request body did not arrive in time"));
  } catch (...) {
    failure = std::current_exception();
  }
  if (failure) {
    c.body_failure = failure;  // the server answers this, not the handler's exception
    std::rethrow_exception(failure);
  }
  body_read = true;
  co_return std::string_view(body);
}

namespace {
/// Waits for a chunk to be sent, at most `limit`; past it, closes the connection (what is
/// queued is dropped, and the producer's next writes fail too) and fails.
task<void> send_within(corio::stream& s, std::chrono::nanoseconds limit, task<void> sent) {
  bool timed_out = false;
  try {
    co_await with_timeout(limit, std::move(sent));
  } catch (const timeout_error&) {
    timed_out = true;
  }
  if (timed_out) {
    const std::error_code code = std::make_error_code(std::errc::timed_out);
    s.close(code);
    throw stream_closed_error(
        "http::body_writer: the client did not take a chunk within " +
            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(limit).count()) +
            " ms (idle_timeout); connection closed",
        code);
  }
}
}  // namespace

task<void> body_writer::write(std::string_view data) {
  if (data.empty()) return corio::detail::make_ready_task();
  task<void> sent;
  if (!chunked_) {
    sent = stream_.write(data);
  } else {
    char size_line[24];
    int n = std::snprintf(size_line, sizeof size_line, "%zx\r\n", data.size());
    std::string chunk;
    chunk.reserve(static_cast<std::size_t>(n) + data.size() + 2);
    chunk.append(size_line, static_cast<std::size_t>(n)).append(data).append("\r\n");
    sent = stream_.write(std::move(chunk));
  }
  // Sent at the call (or failed): nothing to time. Otherwise a client that stops reading
  // would hold the producer in this write, and the connection, for ever.
  if (sent.is_ready() || send_timeout_ == std::chrono::nanoseconds::max()) return sent;
  return send_within(stream_, send_timeout_, std::move(sent));
}

response response::text(int status, std::string body, std::string content_type) {
  response r;
  r.status = status;
  r.body = std::move(body);
  r.headers.add("Content-Type", std::move(content_type));
  return r;
}

response response::chunked(int status, std::function<task<void>(body_writer&)> produce) {
  response r;
  r.status = status;
  r.producer = std::move(produce);
  return r;
}

std::string_view reason_phrase(int status) noexcept {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 417:
      return "Expectation Failed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

namespace detail {

namespace {
// Why large bodies are read with partial read_into calls: read_bytes(n) (and a whole
// read_into) waits until all n bytes are in the stream's buffer, so a body larger than the
// stream's max_buffer_size (100 MiB by default, less than the client's 256 MiB
// max_body_bytes) failed with buffer_full instead of being read, or answered. A partial
// read_into moves what each receive brought into the body, and the body grows only as bytes
// arrive, so a length that is never sent costs nothing.
constexpr std::size_t body_piece = 64 * 1024;        // room made per partial read
constexpr std::size_t whole_read_max = 1024 * 1024;  // larger bodies are read piece by piece

/// Appends exactly `n` bytes from `s` to `body`.
task<void> append_exactly(corio::stream& s, std::string& body, std::size_t n) {
  for (std::size_t end = body.size() + n; body.size() < end;) {
    std::size_t old = body.size();
    body.resize(old + std::min(end - old, body_piece));
    std::size_t got = 0;
    try {
      got = co_await s.read_into(std::as_writable_bytes(std::span(body).subspan(old)), true);
    } catch (...) {
      body.resize(old);
      throw;
    }
    body.resize(old + got);
  }
}

task<std::string> read_length_body(corio::stream& s, std::size_t n) {
  std::string body;
  co_await append_exactly(s, body, n);
  co_return body;
}

/// A body delimited by the peer closing the connection, bounded by max_body.
task<std::string> read_body_until_close(corio::stream& s, std::size_t max_body) {
  std::string body;
  for (;;) {
    std::size_t old = body.size();
    std::size_t room = max_body - old;
    body.resize(old + (room < body_piece ? room + 1 : body_piece));  // + 1: an overrun shows
    std::size_t got = 0;
    bool closed = false;
    try {
      got = co_await s.read_into(std::as_writable_bytes(std::span(body).subspan(old)), true);
    } catch (const stream_closed_error& e) {
      // Any close ends the body, as for read_until_close (S26), except an overflow (D5) and a
      // TLS peer's EOF without close_notify (D10): the body may have been cut by an attacker
      // (unless the context's set_truncation_is_error(false) says not to care).
      if (e.code() == errc::buffer_full) throw;
      if (e.code() == errc::tls_truncated) {
        throw stream_closed_error(
            "HTTP: body delimited by closing cut short: the TLS peer closed without close_notify",
            e.code());
      }
      closed = true;
    }
    body.resize(old + got);
    if (closed) break;
    if (body.size() > max_body) {
      throw protocol_error(413, "HTTP: body delimited by closing exceeds max_body_bytes=" +
                                    std::to_string(max_body));
    }
  }
  co_return body;
}

/// Reads what is left of a delimited piece whose end is not buffered (read_delimited).
task<std::string> read_delimited_slowly(corio::stream& s, std::string_view delimiter,
                                        std::size_t max_bytes, int status,
                                        std::string_view too_long) {
  std::string piece;
  for (;;) {
    if (s.buffered_bytes() == 0) (void)co_await s.read_until("");
    std::string_view data = s.peek();
    std::size_t end = delimited_end(piece, data, delimiter);
    std::size_t take = end == std::string_view::npos ? data.size() : end;
    if (piece.size() + take > max_bytes) throw protocol_error(status, std::string(too_long));
    piece += co_await s.read_bytes(take);  // buffered: decided at the call (S9)
    if (end != std::string_view::npos) co_return piece;
  }
}

task<std::string> read_chunked_body(corio::stream& s, std::size_t max_body) {
  // Chunked (the http1connection.py pattern): size line, data, CRLF; then trailers. The
  // lines go through the parsers decode_chunked uses (parser.hpp), with the same limits.
  // Why read_delimited: a read_until past its max_bytes closes the stream (S16), and a line
  // over the limit could not be answered.
  std::string body;
  for (;;) {
    std::string line = co_await read_delimited(s, "\r\n", max_chunk_line + 2, 400,
                                               "HTTP: chunk-size line too long");
    std::uint64_t size = parse_chunk_size(std::string_view(line).substr(0, line.size() - 2));
    if (size == 0) break;
    if (size > max_body - body.size()) {
      throw protocol_error(413,
                           "HTTP: chunked body exceeds max_body_bytes=" + std::to_string(max_body));
    }
    co_await append_exactly(s, body, static_cast<std::size_t>(size));
    if (co_await s.read_bytes(2) != "\r\n") {
      throw protocol_error(400, "HTTP: chunk data not followed by CRLF");
    }
  }
  for (std::size_t index = 0;; ++index) {  // trailer fields: checked, bounded, then ignored
    static const std::string too_long =
        "HTTP: trailer field longer than " + std::to_string(max_trailer_line) + " bytes";
    std::string trailer = co_await read_delimited(s, "\r\n", max_trailer_line + 2, 431, too_long);
    if (trailer == "\r\n") break;
    check_trailer_line(std::string_view(trailer).substr(0, trailer.size() - 2), index);
  }
  co_return body;
}
}  // namespace

std::size_t delimited_end(std::string_view before, std::string_view data,
                          std::string_view delimiter) noexcept {
  for (std::size_t held = delimiter.size() - 1; held > 0; --held) {  // longest straddle first
    if (before.ends_with(delimiter.substr(0, held)) && data.starts_with(delimiter.substr(held))) {
      return delimiter.size() - held;
    }
  }
  std::size_t found = data.find(delimiter);
  return found == std::string_view::npos ? found : found + delimiter.size();
}

task<std::string> read_delimited(corio::stream& s, std::string_view delimiter,
                                 std::size_t max_bytes, int status, std::string_view too_long) {
  std::string_view data = s.peek();
  std::size_t end = delimited_end({}, data.substr(0, max_bytes), delimiter);
  if (end != std::string_view::npos) return s.read_bytes(end);  // buffered: decided now (S9)
  return read_delimited_slowly(s, delimiter, max_bytes, status, too_long);
}

// Not a coroutine: a body with no framing, or whose bytes are buffered already, gives a task
// decided at the call, which the server's with_timeout awaits without a timer.
task<std::string> read_body(corio::stream& s, body_framing framing, std::size_t max_body) {
  switch (framing.kind) {
    case body_kind::none:
      return corio::detail::make_ready_task<std::string>(std::string());
    case body_kind::length:
      if (framing.length > max_body) {
        return corio::detail::make_failed_task<std::string>(std::make_exception_ptr(
            protocol_error(413, "HTTP: body of " + std::to_string(framing.length) +
                                    " bytes exceeds max_body_bytes=" + std::to_string(max_body))));
      }
      // A small body comes whole with read_bytes: decided at the call when it is buffered.
      if (framing.length <= std::min(whole_read_max, s.options().max_buffer_size / 2)) {
        return s.read_bytes(static_cast<std::size_t>(framing.length));
      }
      return read_length_body(s, static_cast<std::size_t>(framing.length));
    case body_kind::until_close:
      return read_body_until_close(s, max_body);
    case body_kind::chunked:
      break;
  }
  return read_chunked_body(s, max_body);
}

}  // namespace detail
}  // namespace corio::http
