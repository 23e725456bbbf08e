// corio/http/client.hpp - an HTTP/1.1 client for http:// and https:// URLs.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "corio/http/message.hpp"
#include "corio/task.hpp"

namespace corio {
class tls_context;
}

namespace corio::http {

/// Settings of a client.
struct client_options {
  std::chrono::nanoseconds timeout = std::chrono::seconds(30);  ///< per request, all included
  bool follow_redirects = false;             ///< follow 301/302/303/307/308 (up to max_redirects)
  int max_redirects = 5;                     ///< redirect limit
  std::size_t max_header_bytes = 64 * 1024;  ///< response head limit
  /// Interim (1xx) responses accepted before the final one of a request (100 Continue, 103
  /// Early Hints...); one more: protocol_error 400. Without a bound, a server sending 1xx
  /// heads for ever held the request until `timeout`. 10 leaves room for 100 Continue, a few
  /// 103 and 102, and bounds what interim heads cost at (10 + 1) * max_header_bytes (Go's
  /// net/http allows 5).
  int max_interim_responses = 10;
  /// Response body limit, whatever the framing (close-delimited included); past it:
  /// protocol_error with status 413. May exceed the stream's max_buffer_size.
  std::size_t max_body_bytes = 256 * 1024 * 1024;
  /// Idle kept-alive connections kept per origin (scheme, host and port) for later requests;
  /// a connection that would be one more is closed after its response instead. Concurrent
  /// requests to one origin each open a connection; without a bound, every one of a burst
  /// stayed open (an fd each) until the server closed it. 0 keeps none.
  std::size_t max_idle_per_origin = 8;
  tls_context* tls = nullptr;  ///< for https://; nullptr: a default client context (verifying)
  std::string user_agent = "corio";  ///< the User-Agent header ("" omits it)
};

/// A response as the client received it.
struct client_response {
  int status = 0;         ///< status code
  std::string reason;     ///< reason phrase
  int version_minor = 1;  ///< 1 for HTTP/1.1
  http::headers headers;  ///< fields
  std::string body;       ///< the whole body (decoded if chunked)
};

/// Sends requests, reusing kept-alive connections per scheme, host and port (at most
/// client_options::max_idle_per_origin idle ones each).
/// Not thread-safe; use one per event loop.
class client {
 public:
  /// A client with no connection yet; connections open on the first request to each origin.
  explicit client(client_options options = {});
  /// Destroys the client and its idle kept-alive connections.
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// Sends `method` to `url` with extra header fields and a body (Content-Length is set when
  /// the body is not empty or the method is POST/PUT/PATCH) and reads the whole response.
  /// A request sent on a kept-alive connection that fails before any byte of the response
  /// arrived (the server had closed it) is sent again once on a new connection if its method
  /// is idempotent (GET, HEAD, OPTIONS, TRACE, PUT, DELETE: RFC 9110 §9.2.2); otherwise, and
  /// on a new connection, the failure is thrown.
  /// Throws protocol_error for a malformed response (431 for a head, interim 1xx or final,
  /// longer than options.max_header_bytes; 400 past options.max_interim_responses interim
  /// responses), stream_closed_error or tls_error from the
  /// connection (stream_closed_error{errc::tls_truncated} for an HTTPS body delimited by
  /// closing that ended without close_notify, D10), timeout_error after options.timeout,
  /// std::invalid_argument for a bad URL (a space or control byte in it included), a method
  /// that is not a token, or a field name, field value or User-Agent that would inject header
  /// lines (CR, LF, NUL…): then nothing is sent.
  [[nodiscard]] task<client_response> request(std::string method, std::string url,
                                              http::headers fields, std::string body);
  /// GET `url`.
  [[nodiscard]] task<client_response> get(std::string url);
  /// POST `body` with `content_type` to `url`.
  [[nodiscard]] task<client_response> post(std::string url, std::string body,
                                           std::string content_type);
  /// Connections kept for reuse, at most options.max_idle_per_origin per origin. One the
  /// server closes while it waits (its idle timeout) is closed at once, fd included, and no
  /// longer counted.
  std::size_t idle_connections() const noexcept;

  /// @cond INTERNAL
  struct state;
  /// @endcond
 private:
  std::unique_ptr<state> state_;
};

/// The parts of an http:// or https:// URL.
struct url_parts {
  bool tls = false;          ///< https
  std::string host;          ///< without brackets for IPv6
  std::uint16_t port = 80;   ///< explicit (1..65535), or 80/443
  std::string target = "/";  ///< path and query
};
/// Parses an absolute http(s) URL (the scheme in any case, RFC 3986 §3.1); a fragment ("#...")
/// is dropped (it is never sent).
/// Throws std::invalid_argument naming the URL: another scheme, a space or control byte, user
/// info ("user@"), no host, '[' or ']' in a host other than around an IPv6 address, an IPv6
/// address without them ("http://::1/"), a port that is not 1..65535.
url_parts parse_url(std::string_view url);

}  // namespace corio::http
