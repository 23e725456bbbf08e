// corio/http/server.hpp - a small, strict, fast HTTP/1.1 server on corio streams.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "corio/http/message.hpp"
#include "corio/stream.hpp"
#include "corio/task.hpp"

namespace corio {
class tcp_listener;
class tls_context;
}  // namespace corio

namespace corio::http {

/// Limits and timeouts of a server.
struct server_options {
  /// Request line + fields; past it: 431 (also for a head that has not ended yet). May exceed
  /// streams.max_buffer_size: a head is taken as it arrives, not whole into the stream's buffer.
  std::size_t max_header_bytes = 64 * 1024;
  /// Past it: 413. May exceed streams.max_buffer_size: bodies are read as they arrive.
  std::size_t max_body_bytes = 16 * 1024 * 1024;
  /// The whole header block must arrive within this (a slowloris peer is cut off).
  std::chrono::nanoseconds header_timeout = std::chrono::seconds(10);
  /// A kept-alive connection may stay silent this long between requests; also the most a
  /// chunk of a streamed response (body_writer::write), or a slice of a body larger than
  /// max_unsent_response_bytes, may wait for the client to take it: a client that reads a
  /// large answer steadily is not cut off, however long the whole takes.
  std::chrono::nanoseconds idle_timeout = std::chrono::seconds(60);
  /// The body must arrive within this once the head was read.
  std::chrono::nanoseconds body_timeout = std::chrono::seconds(60);
  /// Pipelining back-pressure: once more than this many response bytes wait unsent on a
  /// connection (a client that pipelines requests without reading the answers), the server
  /// waits until they are sent before it handles the next request; if that takes longer
  /// than idle_timeout, the connection is closed. Requests answered one at a time never
  /// wait for this.
  std::size_t max_unsent_response_bytes = 1024 * 1024;
  std::string server_name = "corio";  ///< the Server header ("" omits it)
  tls_context* tls = nullptr;         ///< serve HTTPS with this server context
  stream_options streams{};           ///< options of accepted streams
};

/// A request handler: a coroutine that turns a request into a response. An exception it
/// throws becomes a 500 response, is reported to the loop's exception handler, and closes the
/// connection; protocol_error and stream_closed_error too (they come from other connections,
/// e.g. an http::client's). Only a failure of request::read_body() on this request is answered
/// as itself (400, 408, 413), or ends the connection if it was the connection that failed.
using handler = std::function<task<response>(request&)>;

/// Serves HTTP/1.1 (and 1.0) over streams: one coroutine per connection, keep-alive,
/// pipelining (responses in order), Content-Length and chunked bodies, 100-continue, limits
/// answered with 400/413/431/501/505, timeouts, and graceful shutdown.
class server {
 public:
  /// A server that answers every request with `h`; nothing listens until serve() is awaited.
  explicit server(handler h, server_options options = {});
  /// Destroys the server; to end connections gracefully, call shutdown() and await serve() first.
  /// Connections still running (handlers serve() no longer waited for, see shutdown()) keep
  /// the server's state, handler included, alive until they end or their loop is destroyed.
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Accepts connections from `listener` and serves each until shutdown(), then returns once
  /// every connection has ended, or at the latest 100 ms after shutdown's grace period ended
  /// (see there). It waits without polling: the end of the last connection, or the end of
  /// the grace period, wakes it. Accept failures such as EMFILE are logged and retried after
  /// a pause, so the server never spins. `listener` must outlive the returned task. One
  /// server may serve several listeners at once (TCP and a unix socket): shutdown() closes
  /// them all and every serve() returns as above; a serve() started after shutdown() closes
  /// its listener and returns.
  [[nodiscard]] task<void> serve(tcp_listener& listener);
  /// Serves one connection until the peer or the protocol closes it, or shutdown() ends it.
  [[nodiscard]] task<void> serve_connection(corio::stream connection);

  /// Graceful shutdown. Stops accepting (closes the listeners) and closes at once the
  /// connections waiting for a request (one whose last response is still being sent is
  /// half-closed instead: its client reads the rest, then the end of the stream, and the
  /// connection ends when the client closes). Requests in progress may finish for `grace_period`
  /// (their responses say Connection: close, and the connection is then closed). When the
  /// grace period ends, every connection still open is closed, with error() ECANCELED: the
  /// reads and writes of its handler, its response producer or its lingering close fail with
  /// stream_closed_error, which ends them (a producer streaming forever, a client that does
  /// not read) within a few loop turns. serve() returns once the last connection has ended,
  /// and waits at most 100 ms more after the grace period for that: the grace period bounds
  /// it. A handler that neither reads nor writes its connection (awaiting a timer, an
  /// upstream that never answers, an fd) is not interrupted: serve() returns without it, and
  /// it goes on, detached, until what it awaits ends (its response is then not sent: writes
  /// to the closed connection fail) or until its loop is destroyed, which destroys it.
  /// active_connections() still counts it. It keeps the server's state alive meanwhile, so
  /// the server object may be destroyed once serve() has returned.
  /// Call it on the loop's thread. Calling it again shortens the grace period when the new
  /// one ends sooner (shutdown(0s) closes every connection now); a longer one changes
  /// nothing.
  void shutdown(std::chrono::nanoseconds grace_period = std::chrono::seconds(10));
  /// Connections being served now.
  std::size_t active_connections() const noexcept;
  /// Requests answered since the server was created.
  std::uint64_t requests_served() const noexcept;

  /// @cond INTERNAL
  struct state;
  /// @endcond
 private:
  std::shared_ptr<state> state_;  // shared with running connections: the server may go first
};

}  // namespace corio::http
