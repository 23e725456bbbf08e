// test/support/raw_sockets.hpp - non-blocking sockets and pipes made with plain syscalls, for
// tests of the low-level io operations and of the loop (no corio transport involved).
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <system_error>
#include <utility>
#include <vector>

namespace corio::testing {

/// Owns a file descriptor; closes it on destruction.
class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  int get() const noexcept { return fd_; }
  /// Gives up ownership: the caller closes the fd.
  int release() noexcept { return std::exchange(fd_, -1); }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

[[noreturn]] inline void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

/// Two connected ends (for a pipe: first = read end, second = write end).
struct fd_pair {
  unique_fd first;
  unique_fd second;
};

/// socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC).
inline fd_pair make_socketpair() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
    throw_errno("socketpair");
  }
  return {unique_fd(sv[0]), unique_fd(sv[1])};
}

/// pipe2(O_NONBLOCK | O_CLOEXEC): first = read end, second = write end.
inline fd_pair make_pipe() {
  int p[2];
  if (::pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) throw_errno("pipe2");
  return {unique_fd(p[0]), unique_fd(p[1])};
}

/// An IPv4 TCP socket, non-blocking and close-on-exec.
inline unique_fd make_tcp_socket() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno("socket");
  return unique_fd(fd);
}

inline sockaddr_in loopback_address(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

inline std::uint16_t local_port(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) < 0) throw_errno("getsockname");
  return ntohs(a.sin_port);
}

/// A TCP socket bound to 127.0.0.1 on an ephemeral port; listening unless `listen` is false
/// (a bound socket that does not listen keeps the port reserved, and connecting to it is
/// refused).
inline unique_fd make_tcp_listener(bool listen = true) {
  unique_fd fd = make_tcp_socket();
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a = loopback_address(0);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) throw_errno("bind");
  if (listen && ::listen(fd.get(), 128) < 0) throw_errno("listen");
  return fd;
}

/// Waits (blocking, bounded) until `fd` is ready for `events`.
inline bool wait_ready(int fd, short events, int timeout_ms = 5000) {
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, timeout_ms) == 1;
}

inline void set_nodelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/// A connected TCP pair over loopback (first = client, second = accepted), both non-blocking,
/// TCP_NODELAY. Made with plain syscalls.
inline fd_pair make_tcp_pair() {
  unique_fd listener = make_tcp_listener();
  unique_fd client = make_tcp_socket();
  sockaddr_in a = loopback_address(local_port(listener.get()));
  if (::connect(client.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 &&
      errno != EINPROGRESS) {
    throw_errno("connect");
  }
  if (!wait_ready(listener.get(), POLLIN)) throw_errno("poll(listener)");
  int accepted = ::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (accepted < 0) throw_errno("accept4");
  unique_fd server(accepted);
  if (!wait_ready(client.get(), POLLOUT)) throw_errno("poll(client)");
  set_nodelay(client.get());
  set_nodelay(server.get());
  return {std::move(client), std::move(server)};
}

/// Which kind of connected stream socket pair a test runs over.
enum class socket_kind { unix_stream, tcp_loopback };

inline const char* to_string(socket_kind kind) {
  return kind == socket_kind::unix_stream ? "socketpair(AF_UNIX)" : "TCP loopback";
}

inline fd_pair make_stream_pair(socket_kind kind) {
  return kind == socket_kind::unix_stream ? make_socketpair() : make_tcp_pair();
}

/// On close, send RST instead of FIN (SO_LINGER {1, 0}).
inline void set_linger_reset(int fd) {
  linger l{1, 0};
  if (::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) < 0) throw_errno("SO_LINGER");
}

/// Sends with non-blocking syscalls until the socket's buffers are full; returns the bytes sent.
inline std::size_t fill_send_buffer(int fd, std::byte fill = std::byte{'f'}) {
  std::vector<std::byte> chunk(64 << 10, fill);
  std::size_t total = 0;
  for (;;) {
    ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      total += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;  // EAGAIN: full
  }
  return total;
}

/// Reads with non-blocking syscalls until nothing is left (bounded by `idle_ms` of silence).
inline std::vector<std::byte> drain(int fd, int idle_ms = 100) {
  std::vector<std::byte> out;
  std::byte buf[64 << 10];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      out.insert(out.end(), buf, buf + n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN && wait_ready(fd, POLLIN, idle_ms)) continue;
    break;
  }
  return out;
}

}  // namespace corio::testing
