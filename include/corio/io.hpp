// corio/io.hpp - the low-level awaitable operations the transports are built from.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <span>

#include "corio/detail/io_op.hpp"
#include "corio/detail/ready_queue.hpp"
#include "corio/loop.hpp"

/// Low-level operations: each is an awaitable whose result is an `int` (bytes transferred,
/// a new fd, poll events, or -errno). They run on whichever backend the current loop uses.
///
/// Lifetime: the memory you pass must stay valid until the co_await returns. If the awaiting
/// coroutine is destroyed while the operation is in flight (task dropped, with_timeout), the
/// operation is cancelled; on io_uring, received bytes land in loop-owned buffers and are
/// dropped, and sends are cancelled synchronously before the destructor returns, so the
/// kernel never touches your memory after that. Cancellation is "partial" in Asio's terms:
/// bytes that had already arrived for a cancelled recv are lost (streams keep them, S13).
namespace corio::io {

/// The awaitable of one low-level operation. Not copyable; await it once.
class [[nodiscard]] operation final : detail::io_handler, detail::recv_sink, detail::ready_node {
 public:
  operation(const operation&) = delete;
  operation& operator=(const operation&) = delete;
  ~operation();

  /// True only for a receive or read into an empty span, which completes at once with 0
  /// (what recv(2) returns) without reaching the backend; every other operation is
  /// submitted when awaited.
  bool await_ready() const noexcept {
    return params_.into.empty() &&
           (params_.kind == detail::op_kind::recv || params_.kind == detail::op_kind::read);
  }
  /// Submits the operation to the loop's backend; `waiting` resumes on completion.
  void await_suspend(std::coroutine_handle<> waiting);
  /// The syscall-style result: bytes transferred or a new fd (>= 0), or -errno.
  int await_resume() const noexcept { return result_; }

  /// @cond INTERNAL
  struct parameters {
    detail::op_kind kind = detail::op_kind::recv;
    int fd = -1;
    std::uint32_t flags = 0;
    std::span<std::byte> into{};
    std::span<const std::byte> from{};
    std::span<const iovec> pieces{};
    const sockaddr* address = nullptr;
    socklen_t address_length = 0;
    long long timeout_ns = 0;
  };
  explicit operation(const parameters& p) noexcept : params_(p) {}
  /// @endcond

 private:
  void on_io_complete(detail::io_op& op) override;
  std::span<std::byte> prepare(std::size_t max) override;
  void commit(std::size_t n) noexcept override { filled_ += n; }
  void run_ready() override { waiting_.resume(); }

  parameters params_;
  event_loop* loop_ = nullptr;
  detail::io_op* op_ = nullptr;
  std::coroutine_handle<> waiting_;
  std::size_t filled_ = 0;
  int result_ = 0;
};

/// Receives up to into.size() bytes from a socket. Result: bytes (0 = EOF) or -errno. On
/// io_uring one call takes at most one provided buffer (loop_options::recv_buffer_size,
/// 32 KiB by default); an empty span completes with 0 at once on both backends.
inline operation recv(int fd, std::span<std::byte> into, int flags = 0) noexcept {
  return operation({.kind = detail::op_kind::recv,
                    .fd = fd,
                    .flags = static_cast<std::uint32_t>(flags),
                    .into = into});
}
/// Sends bytes on a socket (MSG_NOSIGNAL is always added). Result: bytes sent or -errno;
/// at most 0x7ffff000 bytes per call (Linux's limit), as send(2).
inline operation send(int fd, std::span<const std::byte> from, int flags = 0) noexcept {
  return operation({.kind = detail::op_kind::send,
                    .fd = fd,
                    .flags = static_cast<std::uint32_t>(flags),
                    .from = from});
}
/// Gather-sends the pieces in one sendmsg. Result: bytes sent or -errno.
inline operation sendmsg(int fd, std::span<const iovec> pieces, int flags = 0) noexcept {
  return operation({.kind = detail::op_kind::sendmsg,
                    .fd = fd,
                    .flags = static_cast<std::uint32_t>(flags),
                    .pieces = pieces});
}
/// Reads from a pipe or file at its current position. Result: bytes (0 = EOF) or -errno.
inline operation read(int fd, std::span<std::byte> into) noexcept {
  return operation({.kind = detail::op_kind::read, .fd = fd, .into = into});
}
/// Writes to a pipe or file. Result: bytes written or -errno.
inline operation write(int fd, std::span<const std::byte> from) noexcept {
  return operation({.kind = detail::op_kind::write, .fd = fd, .from = from});
}
/// Accepts a connection (non-blocking, close-on-exec). Result: the new fd or -errno.
inline operation accept(int listen_fd) noexcept {
  return operation({.kind = detail::op_kind::accept, .fd = listen_fd});
}
/// Connects a non-blocking socket. Result: 0 or -errno (e.g. -ECONNREFUSED). An AF_UNIX
/// connect to a listener whose backlog is full completes with -EAGAIN on epoll (nothing
/// would signal room: retry later) and waits for room in the kernel on io_uring, where
/// cancelling it was seen to hang (Linux 6.18); tcp_stream::connect_unix avoids both.
inline operation connect(int fd, const sockaddr* address, socklen_t length) noexcept {
  return operation(
      {.kind = detail::op_kind::connect, .fd = fd, .address = address, .address_length = length});
}
/// Waits until fd is ready for `events` (POLLIN, POLLOUT…). Result: the ready events or -errno.
inline operation poll(int fd, short events) noexcept {
  return operation({.kind = detail::op_kind::poll,
                    .fd = fd,
                    .flags = static_cast<std::uint32_t>(static_cast<unsigned short>(events))});
}
/// Completes after `duration` with -ETIME (through IORING_OP_TIMEOUT on io_uring); a negative
/// duration is zero.
inline operation timeout(std::chrono::nanoseconds duration) noexcept {
  const long long ns = duration.count() < 0 ? 0 : duration.count();
  return operation({.kind = detail::op_kind::timeout, .timeout_ns = ns});
}

/// Closes an fd used with these operations. Use it instead of ::close(): the epoll backend
/// keeps one registration per fd, which must be dropped before the number can be reused.
/// Operations still pending on the fd complete with -ECANCELED (epoll) or run to their end.
void close(int fd) noexcept;

}  // namespace corio::io
