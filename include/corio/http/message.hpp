// corio/http/message.hpp - HTTP/1.1 requests, responses and header fields.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "corio/errors.hpp"
#include "corio/task.hpp"

namespace corio {
class stream;
}

namespace corio::http {

/// A malformed or unacceptable message. status() is the response a server sends for it
/// (400, 413, 431, 501…); the connection is closed afterwards.
class protocol_error : public corio::error {
 public:
  /// Builds the error answered by HTTP `status`, with a message saying what was wrong.
  protocol_error(int status, const std::string& what) : corio::error(what), status_(status) {}
  /// The HTTP status that answers this error.
  int status() const noexcept { return status_; }

 private:
  int status_;
};

/// Header fields in arrival order; names compare case-insensitively.
class headers {
 public:
  /// One header field: name (as received) and value.
  using field = std::pair<std::string, std::string>;

  /// Appends a field (duplicates allowed, as on the wire).
  void add(std::string name, std::string value);
  /// Replaces every field called `name` by one with `value`.
  void set(std::string_view name, std::string value);
  /// Removes every field called `name`.
  void remove(std::string_view name);
  /// The first value of `name`, if present.
  std::optional<std::string_view> get(std::string_view name) const;
  /// How many fields are called `name`.
  std::size_t count(std::string_view name) const;
  /// True if the comma-separated values of `name` contain `token` (case-insensitive).
  bool has_token(std::string_view name, std::string_view token) const;
  /// Every field, in arrival order.
  const std::vector<field>& fields() const noexcept { return fields_; }
  /// True if there is no field.
  bool empty() const noexcept { return fields_.empty(); }

 private:
  std::vector<field> fields_;
};

/// Case-insensitive ASCII comparison, as header names need.
bool iequals(std::string_view a, std::string_view b) noexcept;

class server;
struct connection_state;

/// A request as the server received it. The body is read before the handler runs, except
/// for requests with `Expect: 100-continue`, whose body the handler reads with read_body()
/// (which first sends `100 Continue`); a handler that answers without reading it rejects
/// the body and the connection is closed after the response.
struct request {
  std::string method;      ///< e.g. "GET"
  std::string target;      ///< request-target as sent, e.g. "/index.html?q=1"
  int version_minor = 1;   ///< 1 for HTTP/1.1, 0 for HTTP/1.0
  http::headers headers;   ///< fields in arrival order
  std::string body;        ///< the body, once read
  bool body_read = false;  ///< whether `body` holds the whole body

  /// The path part of the target (before '?'). For an absolute-form target
  /// ("http://host/a?b", RFC 9112 §3.2.2) the path of that URL: "/a" ("/" if it has none).
  std::string_view path() const noexcept;
  /// The query part of the target (after '?'), or "" (of the URL, for an absolute-form target).
  std::string_view query() const noexcept;
  /// Reads the whole body (sending 100 Continue first if the client asked for it) and
  /// returns it; completes at once if it was already read. Throws protocol_error (413 when
  /// longer than max_body_bytes, 400 when malformed).
  [[nodiscard]] task<std::string_view> read_body();

  /// @cond INTERNAL
  connection_state* connection = nullptr;
  /// @endcond
};

/// Writes a chunked response body piece by piece (see response::chunked).
class body_writer {
 public:
  /// Sends one chunk (empty data sends nothing); completes when the kernel has it. Throws
  /// stream_closed_error once the connection is closed: the client went away, the server's
  /// shutdown grace period ended, or the client did not take this chunk within the server's
  /// idle_timeout (a client that stops reading), which closes the connection (code()
  /// ETIMEDOUT).
  task<void> write(std::string_view data);
  /// @cond INTERNAL
  explicit body_writer(corio::stream& s, bool chunked = true,
                       std::chrono::nanoseconds send_timeout = std::chrono::nanoseconds::max())
      : stream_(s), chunked_(chunked), send_timeout_(send_timeout) {}
  /// @endcond
 private:
  corio::stream& stream_;
  bool chunked_;
  std::chrono::nanoseconds send_timeout_;
};

/// A response from a handler. Content-Length is set from `body` unless the body is
/// streamed with chunked() (a Content-Length field of the handler's is ignored), except in
/// an answer to HEAD with an empty `body`: there the handler's Content-Length, the length a
/// GET would have had (RFC 9110 §9.3.2), is kept, and must be one field of 1 to 18 digits
/// (else 500, as below). Date and Server are added by the server. Field names must be
/// tokens, and field values and `reason` hold no control byte but HTAB: otherwise the server
/// sends 500 instead and reports the std::invalid_argument (header injection), as it does for
/// a status that is not three digits (100 to 999).
struct response {
  int status = 200;                                  ///< status code
  std::string reason;                                ///< empty: the standard phrase
  http::headers headers;                             ///< extra fields
  std::string body;                                  ///< the body (ignored for HEAD)
  std::function<task<void>(body_writer&)> producer;  ///< set by chunked()

  /// A response with a text body and Content-Type.
  static response text(int status, std::string body,
                       std::string content_type = "text/plain; charset=utf-8");
  /// A response whose body `produce` writes with Transfer-Encoding: chunked.
  static response chunked(int status, std::function<task<void>(body_writer&)> produce);
};

/// The standard reason phrase of `status` ("OK", "Not Found"…), or "Unknown".
std::string_view reason_phrase(int status) noexcept;

}  // namespace corio::http
