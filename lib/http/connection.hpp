// lib/http/connection.hpp - what a request needs from the connection it arrived on.
#pragma once

#include <exception>

#include "corio/http/server.hpp"
#include "corio/stream.hpp"
#include "http/parser.hpp"

namespace corio::http {

/// Per-connection state the server shares with request::read_body().
struct connection_state {
  corio::stream* stream = nullptr;
  const server_options* options = nullptr;
  detail::body_framing framing;
  bool expect_continue = false;
  bool continue_sent = false;
  /// Why request::read_body() failed on this connection (its own body: protocol_error, or
  /// stream_closed_error), so that the server answers that, and not a 500, whatever the
  /// handler does with the exception.
  std::exception_ptr body_failure;
};

namespace detail {
/// Reads a body with the given framing from `s` (chunked trailers are read and ignored).
task<std::string> read_body(corio::stream& s, body_framing framing, std::size_t max_body);
}  // namespace detail

}  // namespace corio::http
