// lib/http/connection.hpp - what a request needs from the connection it arrived on.
#pragma once

#include <cstddef>
#include <exception>
#include <string>
#include <string_view>

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
  /// The final response head went out (a chunked producer runs after it): a 100 Continue
  /// would now land in the body, so read_body() reads without sending one.
  bool final_head_sent = false;
  /// Why request::read_body() failed on this connection (its own body: protocol_error, or
  /// stream_closed_error), so that the server answers that, and not a 500, whatever the
  /// handler does with the exception.
  std::exception_ptr body_failure;
};

namespace detail {
/// Reads a body with the given framing from `s` (chunked trailers are read and ignored).
task<std::string> read_body(corio::stream& s, body_framing framing, std::size_t max_body);

/// Where `delimiter` ends in `data` (the offset just past it), given the bytes read before
/// `data` (`before`, whose tail may hold the start of the delimiter); npos if not in `data`.
std::size_t delimited_end(std::string_view before, std::string_view data,
                          std::string_view delimiter) noexcept;

/// Reads up to and including the first `delimiter`, at most `max_bytes` in all, consuming
/// only those bytes. Throws protocol_error(`status`, `too_long`) as soon as more than
/// `max_bytes` have arrived without the delimiter, stream_closed_error if the stream closes
/// first. `delimiter` and `too_long` must outlive the task.
/// Why not read_until(delimiter, max_bytes): a read past its max_bytes closes the stream (S16),
/// and so does a buffer past streams.max_buffer_size (S42); either way the server could not
/// answer. So the bytes are taken as they arrive: wait with read_until("") (which consumes
/// nothing, S17), look with peek(), and consume only bytes before the delimiter's end. The
/// search resumes where it stopped, so a line trickling in costs O(n). Decided at the call
/// (no coroutine) when the delimiter is buffered already.
task<std::string> read_delimited(corio::stream& s, std::string_view delimiter,
                                 std::size_t max_bytes, int status, std::string_view too_long);
}  // namespace detail

}  // namespace corio::http
