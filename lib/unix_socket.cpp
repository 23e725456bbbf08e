// Unix domain stream sockets by path: tcp_listener::bind_unix, tcp_stream::connect_unix and
// the peer's credentials. Accepting, reading and writing are the TCP code's (lib/tcp.cpp,
// lib/stream.cpp): a connected unix socket is a socket transport like any other.
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "connect_within.hpp"
#include "corio/errors.hpp"
#include "corio/io.hpp"
#include "corio/loop.hpp"
#include "corio/tcp.hpp"
#include "corio/timeout.hpp"
#include "stream_core.hpp"
#include "tcp_listener_state.hpp"

namespace corio {
namespace {

std::error_code os_error(int err) { return {err, std::generic_category()}; }

/// The longest file path or abstract name: sun_path (108 bytes on Linux) less the NUL that
/// ends a path, or the NUL that starts an abstract name.
constexpr std::size_t max_unix_path = sizeof(sockaddr_un::sun_path) - 1;

/// A unix socket address made from a path as the API writes it (tcp_listener::bind_unix).
struct unix_address {
  sockaddr_un address{};
  socklen_t length = 0;
  bool abstract = false;
  std::string display;  // for messages and unix_path(): "@name" for an abstract name

  const sockaddr* get() const noexcept { return reinterpret_cast<const sockaddr*>(&address); }
  const char* file() const noexcept { return address.sun_path; }  // a file path's, NUL-ended
};

unix_address make_unix_address(std::string_view path, std::string_view who) {
  if (path.empty()) throw std::invalid_argument(std::string(who) + ": empty unix socket path");
  unix_address a;
  a.address.sun_family = AF_UNIX;
  a.abstract = path.front() == '@' || path.front() == '\0';
  const std::string_view name = a.abstract ? path.substr(1) : path;
  // Built piece by piece: g++ 12's "@" + std::string(...) gives a -Wrestrict false positive
  // in release builds (GCC PR105329).
  if (a.abstract) a.display.push_back('@');
  a.display.append(name);
  if (name.size() > max_unix_path) {
    throw std::invalid_argument(std::string(who) + ": unix socket path \"" + a.display + "\" is " +
                                std::to_string(name.size()) +
                                " bytes long; sun_path holds at most " +
                                std::to_string(max_unix_path));
  }
  if (a.abstract) {
    // Why no final NUL: an abstract name is exactly the bytes the address length covers
    // (unix(7)); systemd, ss(8) and socat write and read them this way.
    std::memcpy(a.address.sun_path + 1, name.data(), name.size());
    a.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  } else {
    if (name.find('\0') != std::string_view::npos) {
      throw std::invalid_argument(std::string(who) + ": unix socket path \"" + a.display +
                                  "\" contains a NUL byte");
    }
    std::memcpy(a.address.sun_path, name.data(), name.size());  // sun_path[size] stays NUL
    a.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + 1);
  }
  return a;
}

constexpr std::string_view bind_name = "tcp_listener::bind_unix";

[[noreturn]] void throw_bind_error(const unix_address& a, const char* what, int err) {
  throw error(
      std::string(bind_name) + ": " + what + " \"" + a.display + "\": " + std::strerror(err),
      os_error(err));
}

/// A name next to `path` (same directory, so that link() and rename() can move what is there
/// to and from `path`) that no other listener of this process or another uses. With
/// `for_bind`, "" if it does not fit sun_path.
std::string sibling_name(const unix_address& a, const char* what, bool for_bind) {
  static std::atomic<unsigned> counter{0};
  const std::string_view path(a.display);
  const std::size_t slash = path.rfind('/');
  std::string name(path.substr(0, slash == std::string_view::npos ? 0 : slash + 1));
  name += ".corio-";
  name += what;
  name += '-';
  name += std::to_string(::getpid());
  name += '-';
  name += std::to_string(counter.fetch_add(1));
  return !for_bind || name.size() <= max_unix_path ? name : std::string();
}

/// Removes the socket file at `a` if it is still the one `stale` describes, a socket nobody
/// listens on. Why not unlink(path): another server that saw the same stale file may have put
/// its own socket at the path since; only the inode probed goes.
void remove_if_unchanged(const unix_address& a, const struct stat& stale) {
  const std::string aside = sibling_name(a, "stale", false);
  if (::rename(a.file(), aside.c_str()) != 0) {
    if (errno == ENOENT) return;  // someone else removed it: the caller tries again
    throw_bind_error(a, "cannot remove the stale socket", errno);
  }
  struct stat moved {};
  if (::lstat(aside.c_str(), &moved) == 0 && moved.st_dev == stale.st_dev &&
      moved.st_ino == stale.st_ino) {
    ::unlink(aside.c_str());
    return;
  }
  // Another server's socket (or anything), put there since the probe: back it goes, never
  // over whatever a third one may have put there meanwhile, and the caller probes again.
  if (::renameat2(AT_FDCWD, aside.c_str(), AT_FDCWD, a.file(), RENAME_NOREPLACE) == 0) return;
  if (errno == EINVAL && ::link(aside.c_str(), a.file()) == 0) {
    ::unlink(aside.c_str());  // a file system without RENAME_NOREPLACE
  }
}

/// Makes room at a file path: removes a socket file that nobody listens on (a crashed
/// server's); refuses to touch anything else. Returns normally when the path may be free.
void remove_stale_socket(const unix_address& a) {
  struct stat st {};
  if (::lstat(a.file(), &st) != 0) return;  // nothing there (or bind() will say what is wrong)
  if (!S_ISSOCK(st.st_mode)) {
    throw error(std::string(bind_name) + ": \"" + a.display +
                    "\" exists and is not a socket (left untouched)",
                os_error(EEXIST));
  }
  // Why a probe: Tornado removes any socket file, so a second instance silently takes the
  // path from a running server. A unix connect is decided at once: refused means stale.
  const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (probe < 0) throw_bind_error(a, "socket() failed for the probe of", errno);
  const int err = ::connect(probe, a.get(), a.length) == 0 ? 0 : errno;
  ::close(probe);
  if (err == 0 || err == EAGAIN) {
    throw error(std::string(bind_name) + ": a server is listening on \"" + a.display + "\"",
                os_error(EADDRINUSE));
  }
  if (err == ENOENT) return;  // removed since the lstat
  if (err != ECONNREFUSED) {
    throw_bind_error(a, "cannot tell whether a server listens on the existing socket", err);
  }
  remove_if_unchanged(a, st);
}

/// Closes a socket that connect_unix has not handed to a stream.
class socket_guard {
 public:
  explicit socket_guard(int fd) noexcept : fd_(fd) {}
  socket_guard(const socket_guard&) = delete;
  socket_guard& operator=(const socket_guard&) = delete;
  // Why io::close: a backend registration of the fd, if any, goes with it.
  ~socket_guard() {
    if (fd_ >= 0) io::close(fd_);
  }
  int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

task<tcp_stream> connect_unix_without_timeout(unix_address address, stream_options options) {
  socket_guard socket(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (socket.get() < 0) {
    const int err = errno;
    throw stream_closed_error("connect to unix socket \"" + address.display +
                                  "\" failed: socket(): " + std::strerror(err),
                              os_error(err));
  }
  std::chrono::milliseconds pause(1);
  for (;;) {
    // Why the syscall and not io::connect: a non-blocking unix connect is decided at once,
    // except when the listener's backlog is full. io_uring then waits for room in the
    // kernel, and cancelling that wait (the timeout, a dropped task) was seen to hang the
    // loop in cancel_now (Linux 6.18, about one run in ten of FullBacklog_ConnectTimesOut);
    // epoll gets -EAGAIN. So the call is made here, never handed to the kernel to finish
    // later (no sockaddr has to outlive it either), and a full backlog is retried below.
    ++event_loop::current().mutable_stats().syscalls;
    if (::connect(socket.get(), address.get(), address.length) == 0) break;
    const int err = errno;
    if (err == EINTR) continue;
    if (err != EAGAIN) {
      throw stream_closed_error(
          "connect to unix socket \"" + address.display + "\" failed: " + std::strerror(err),
          os_error(err));
    }
    // The backlog is full and nothing signals room: try again after a pause. A failed unix
    // connect leaves the socket unconnected, so it can try again.
    co_await sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
  tcp_stream connected(socket.release(), options);
  co_return connected;
}

}  // namespace

void unlink_unix_socket(const tcp_listener::state& s) noexcept {
  if (!s.unlink_on_close) return;
  struct stat st {};
  if (::lstat(s.unix_path.c_str(), &st) != 0) return;
  // Why compare the inode: another server may have replaced the socket since (it removed
  // ours as stale), or a relative path may now lead elsewhere (chdir).
  if (!S_ISSOCK(st.st_mode) || st.st_dev != s.unix_device || st.st_ino != s.unix_inode) return;
  ::unlink(s.unix_path.c_str());
}

tcp_listener tcp_listener::bind_unix(std::string_view path, unix_listen_options options) {
  unix_address a = make_unix_address(path, bind_name);
  if (options.mode != -1 && (options.mode < 0 || options.mode > 07777)) {
    throw std::invalid_argument(std::string(bind_name) + ": mode " + std::to_string(options.mode) +
                                " for \"" + a.display + "\" is not a permission mode");
  }
  if (a.abstract && options.mode != -1) {
    throw std::invalid_argument(std::string(bind_name) + ": the abstract name \"" + a.display +
                                "\" has no file to apply a mode to");
  }
  // Why a second name: a socket bound at the path but not yet listening refuses a probe as a
  // crashed server's does, so another server starting at the same moment would remove it and
  // bind its own, and both would run, this one unreachable. The socket is bound and listening
  // (with its mode) under a name of its own next to the path, and only then linked to the
  // path, which link() does only if nothing is there. A path too long for a second name in
  // sun_path, or on a file system without hard links (EPERM), is bound in place (that narrow
  // race remains there).
  std::string staging = a.abstract ? std::string() : sibling_name(a, "new", true);
  int fd = -1;
  struct stat st {};
  for (;;) {  // at most twice: staged, then in place if the file system has no hard links
    unix_address bound_at = staging.empty() ? a : make_unix_address(staging, bind_name);
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw_bind_error(a, "socket() failed for", errno);
    // From the bind on, a failure also removes the file it made.
    auto fail = [&](const char* what, int err) {
      ::close(fd);
      if (!bound_at.abstract) ::unlink(bound_at.file());
      throw_bind_error(a, what, err);
    };
    if (staging.empty() && !a.abstract) {
      try {
        remove_stale_socket(a);
      } catch (...) {
        ::close(fd);
        throw;
      }
    }
    if (::bind(fd, bound_at.get(), bound_at.length) != 0) {
      const int err = errno;
      ::close(fd);
      throw_bind_error(a, "cannot bind", err);
    }
    if (!a.abstract) {
      // Why before listen(): no client can connect while the umask's permissions still apply.
      if (options.mode != -1 && ::chmod(bound_at.file(), static_cast<mode_t>(options.mode)) != 0) {
        fail("cannot chmod", errno);
      }
      if (::lstat(bound_at.file(), &st) != 0) fail("cannot stat", errno);
    }
    if (::listen(fd, options.backlog) != 0) fail("cannot listen on", errno);
    if (staging.empty()) break;
    // Bounded: each round either links, or finds a live server (EADDRINUSE), or removed a
    // stale socket that another starting server may have replaced at once.
    bool linked = false;
    int link_error = 0;
    for (int attempt = 0; attempt < 16 && !linked && link_error == 0; ++attempt) {
      if (::link(bound_at.file(), a.file()) == 0) {
        linked = true;
      } else if (errno != EEXIST) {
        link_error = errno;
      } else {
        try {
          remove_stale_socket(a);
        } catch (...) {
          ::close(fd);
          ::unlink(bound_at.file());
          throw;
        }
      }
    }
    ::unlink(bound_at.file());  // the path holds the socket now, or it goes
    if (linked) break;
    ::close(fd);
    if (link_error != EPERM) {
      throw_bind_error(
          a, link_error == 0 ? "other sockets kept appearing at" : "cannot link the new socket to",
          link_error == 0 ? EADDRINUSE : link_error);
    }
    staging.clear();  // EPERM: a file system without hard links; bound in place
  }

  tcp_listener listener;
  try {
    listener.state_ = std::make_shared<state>();
    listener.state_->unix_path = a.display;
  } catch (const std::bad_alloc&) {  // B13: neither the fd nor the file is ours to leak
    listener.state_.reset();
    ::close(fd);
    if (!a.abstract) ::unlink(a.file());  // linked a moment ago: nobody else's yet
    throw;
  }
  listener.state_->fd = fd;
  listener.state_->unlink_on_close = !a.abstract && options.unlink_on_close;
  listener.state_->unix_device = st.st_dev;
  listener.state_->unix_inode = st.st_ino;
  return listener;
}

task<tcp_stream> tcp_stream::connect_unix(std::string_view path, connect_options options) {
  unix_address address = make_unix_address(path, "tcp_stream::connect_unix");
  std::string what = "tcp_stream::connect_unix to \"" + address.display + "\": not connected";
  auto work = connect_unix_without_timeout(std::move(address), options.stream);
  // Eager like every stream operation (S4): the connect starts at the call.
  if (options.timeout.count() > 0) {
    return start(detail::connect_within(options.timeout, std::move(work), std::move(what)));
  }
  return start(std::move(work));
}

std::optional<unix_credentials> tcp_stream::peer_credentials() const {
  if (core_ == nullptr || core_->closed() || core_->fd() < 0) return std::nullopt;
  const int fd = core_->fd();
  int domain = 0;
  socklen_t length = sizeof domain;
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) != 0 || domain != AF_UNIX) {
    return std::nullopt;  // Why check: SO_PEERCRED answers on TCP sockets too (pid 0, nobody)
  }
  ucred credentials{};
  length = sizeof credentials;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return std::nullopt;
  unix_credentials out;
  out.pid = credentials.pid;
  out.uid = credentials.uid;
  out.gid = credentials.gid;
  return out;
}

}  // namespace corio
