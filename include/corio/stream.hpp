// corio/stream.hpp - buffered streams with Tornado IOStream semantics (stream-semantics.md).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include "corio/errors.hpp"
#include "corio/task.hpp"

namespace corio {

/// Limits of a stream (S1-S3).
struct stream_options {
  /// Limit on the read buffer; 0 selects the default of 100 MiB (S1).
  std::size_t max_buffer_size = 100 << 20;
  /// Most bytes one transport read asks for; 0 selects 64 KiB. Clamped to max_buffer_size/2 (S2).
  std::size_t read_chunk_size = 64 << 10;
  /// Limit on unsent outgoing bytes; 0 means no limit (S3).
  std::size_t max_write_buffer_size = 0;
};

namespace detail {
class stream_core;
}

/// A buffered byte stream over a transport (socket or pipe), with the buffering, delimiter
/// and error semantics of Tornado's IOStream (the rules S1-S66 of stream-semantics.md).
///
/// Every operation starts when it is called (S4) and returns a task bound to the started
/// operation: `s.write(a); s.write(b);` sends a then b even if neither task is awaited, and
/// a read served from the buffer is complete when the call returns (S7). One read may be
/// pending at a time (S8); writes queue in call order (S28). Errors known at the call surface
/// no later than the co_await of the returned task (S5).
///
/// Writes issued during one loop turn leave in one gathered send at the end of that turn.
/// A stream is movable; destroying it behaves like close() (queued writes get their one
/// non-blocking send; a close callback not yet taken by a close does not run, one already
/// taken still runs once), and its in-flight kernel operations are cancelled safely.
///
/// Cancellation (with_timeout or destroying the task of a pending read) withdraws the read:
/// nothing is consumed, every byte received stays buffered (S13, "total" cancellation).
class stream {
 public:
  /// An empty stream (operator bool is false); assign a real one before use.
  stream() noexcept;
  /// Takes over `other`'s transport, buffers and pending operations; `other` becomes empty.
  stream(stream&&) noexcept;
  /// Closes this stream (as close()), then takes over `other`'s transport; `other` becomes empty.
  stream& operator=(stream&&) noexcept;
  /// Closes the stream (without running the close callback) and cancels its kernel operations.
  virtual ~stream();

  /// Reads up to and including the first occurrence of `delimiter` (S14).
  /// max_bytes > 0 limits the result length; exceeding it closes the stream and fails the read
  /// with stream_closed_error whose code() is errc::unsatisfiable_read (S15, S16).
  /// An empty delimiter completes with "" once any byte is buffered (S17).
  [[nodiscard]] task<std::string> read_until(std::string_view delimiter, std::size_t max_bytes = 0);

  /// Reads up to and including the end of the leftmost match of the PCRE2 `pattern` in the
  /// unconsumed bytes (S18-S20). Throws regex_error, leaving the stream untouched, if the
  /// pattern does not compile (D8). max_bytes as for read_until (S19).
  [[nodiscard]] task<std::string> read_until_regex(std::string_view pattern,
                                                   std::size_t max_bytes = 0);

  /// Reads exactly n bytes, or with partial=true between 1 and n bytes as soon as any are
  /// buffered (S21-S23). read_bytes(0) completes at once with "".
  [[nodiscard]] task<std::string> read_bytes(std::size_t n, bool partial = false);

  /// As read_bytes(into.size(), partial), but into the caller's span; the result is the count
  /// (S24, S25). The span must stay valid until the read completes, fails or is withdrawn.
  [[nodiscard]] task<std::size_t> read_into(std::span<std::byte> into, bool partial = false);

  /// Completes when the stream closes, with everything buffered (S26, S27). Never fails on
  /// close, except after a buffer overflow (D5).
  [[nodiscard]] task<std::string> read_until_close();

  /// Queues `data` (copied at the call) for sending; completes when it and everything written
  /// before it have been accepted by the kernel (S28-S34). write("") is a flush barrier (S30).
  /// Throws stream_buffer_full_error past max_write_buffer_size (S31), at the call. On a
  /// closed stream the returned task fails with stream_closed_error (S32): a write whose task
  /// is never awaited does not report it. Destroying the task only stops the waiting.
  task<void> write(std::string_view data);
  /// As write(string_view), taking the string without copying it (a small one may still be
  /// appended to the previous unsent write, so that one turn's replies leave contiguously).
  task<void> write(std::string&& data);
  /// Overload so that string literals pick the view overload.
  task<void> write(const char* data) { return write(std::string_view(data)); }

  /// Half-closes the stream (a lingering close, as HTTP servers need after an error answer):
  /// once every byte written so far has been sent (on a TLS stream, followed by a
  /// close_notify alert), shuts down the sending direction of the socket (shutdown(2),
  /// SHUT_WR), so that the peer reads EOF while this side can still read what the peer goes
  /// on sending. Returns at once: to know when the bytes have left, await a write("") made
  /// before the call.
  /// Reads are unaffected: the stream still closes when it reads EOF (S35) or on close().
  /// A later write throws std::logic_error. Idempotent; does nothing on a closed stream.
  /// Throws std::logic_error on a pipe stream, or on a TLS stream whose handshake has not
  /// finished. Not in Tornado, whose streams have no half-close (S35).
  void shutdown_write();

  /// Closes the stream now; pending operations fail with stream_closed_error (S36, S37).
  /// Queued writes get one non-blocking send attempt first (what Tornado's inline write would
  /// already have sent, so `write(x); close();` delivers a small x); what the kernel does not
  /// take at once is discarded. While a send is already in flight (a big write the kernel is
  /// still taking), no further attempt is made: that send is cancelled, and what it had not
  /// sent is discarded with the rest (S36). TLS streams then send close_notify. Idempotent. The
  /// close callback runs later, from the loop. To be sure everything is sent, await the last write.
  void close() noexcept;
  /// As close(), recording `reason` as error() (first close only).
  void close(std::error_code reason) noexcept;

  /// True from the moment the stream closed (S41).
  bool closed() const noexcept;
  /// True while a read is pending (S41).
  bool reading() const noexcept;
  /// True while unsent bytes are queued (S41).
  bool writing() const noexcept;
  /// The error that closed the stream; empty for a clean EOF or close() (S35).
  std::error_code error() const noexcept;
  /// Sets (or, with an empty function, clears) the callback run once after the stream
  /// closes, from the event loop, after the continuations of the failed operations (S38, S40).
  void set_close_callback(std::function<void()> callback);

  /// Bytes received and not yet read.
  std::size_t buffered_bytes() const noexcept;
  /// The bytes received and not yet read (buffered_bytes() of them), without consuming them
  /// and without reading from the transport; after a close, what S39 keeps. The view is
  /// valid until the next read or close() on this stream and until the loop runs again (a
  /// receive may move the buffer): look, then consume what you need with a read, which the
  /// buffer serves at the call (S7, S9). For protocol code that must decide how much to take
  /// without the closing that a read_until over its max_bytes causes (S16), e.g. an HTTP
  /// server answering 431 to a head that does not fit. Not in Tornado.
  std::string_view peek() const noexcept;
  /// The effective options (after the S1/S2 defaults and clamps).
  const stream_options& options() const noexcept;
  /// The transport's fd (socket or pipe), for what corio does not wrap: socket options set
  /// with setsockopt(2) (SO_KEEPALIVE, TCP_KEEPIDLE, TCP_USER_TIMEOUT, SO_RCVBUF…), fstat(2)
  /// (Tornado's fileno(), Asio's native_handle()). -1 for an empty stream and from the
  /// moment the stream closed (the number may then name another file). The stream still
  /// owns the fd: do not close it, read or write it (on a TLS stream that would bypass the
  /// TLS session), or clear O_NONBLOCK.
  int native_handle() const noexcept;
  /// True if the stream refers to a transport (not default-constructed or moved-from).
  explicit operator bool() const noexcept { return core_ != nullptr; }

  /// @cond INTERNAL
  enum class transport_kind { socket, pipe };
  stream(int fd, transport_kind kind, stream_options options);
  detail::stream_core& core() const noexcept { return *core_; }
  /// @endcond

 protected:
  /// @cond INTERNAL
  detail::stream_core* core_ = nullptr;
  /// @endcond
};

}  // namespace corio
