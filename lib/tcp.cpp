// TCP streams and listeners: sockets, name resolution off the loop thread, accept.
#include "corio/tcp.hpp"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "backend/backend.hpp"
#include "corio/io.hpp"
#include "corio/loop.hpp"
#include "corio/timeout.hpp"
#include "stream_core.hpp"

namespace corio {
namespace {

std::error_code os_error(int err) { return {err, std::generic_category()}; }

endpoint to_endpoint(const sockaddr_storage& ss) {
  char text[INET6_ADDRSTRLEN] = {};
  endpoint ep;
  if (ss.ss_family == AF_INET) {
    const auto& sin = reinterpret_cast<const sockaddr_in&>(ss);
    ::inet_ntop(AF_INET, &sin.sin_addr, text, sizeof text);
    ep.address = text;
    ep.port = ntohs(sin.sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(ss);
    ::inet_ntop(AF_INET6, &sin6.sin6_addr, text, sizeof text);
    ep.address = text;
    ep.port = ntohs(sin6.sin6_port);
  }
  return ep;
}

struct resolved_address {
  sockaddr_storage address{};
  socklen_t length = 0;
};

/// Numeric addresses need no resolver (and so no thread).
bool parse_numeric(std::string_view host, std::uint16_t port, resolved_address& out) {
  std::string h(host);
  if (!h.empty() && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  auto* sin = reinterpret_cast<sockaddr_in*>(&out.address);
  if (::inet_pton(AF_INET, h.c_str(), &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    out.length = sizeof(sockaddr_in);
    return true;
  }
  out.address = {};
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out.address);
  if (::inet_pton(AF_INET6, h.c_str(), &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    out.length = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

std::vector<resolved_address> resolve_blocking(const std::string& host, std::uint16_t port,
                                               int flags, int& gai_error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = flags | AI_ADDRCONFIG;
  addrinfo* list = nullptr;
  std::vector<resolved_address> out;
  gai_error = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &list);
  if (gai_error != 0) return out;
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    resolved_address r;
    std::memcpy(&r.address, ai->ai_addr, ai->ai_addrlen);
    r.length = ai->ai_addrlen;
    out.push_back(r);
  }
  ::freeaddrinfo(list);
  return out;
}

/// Resolves a name on a helper thread and resumes the coroutine on its loop through post().
/// Why a mutex-guarded loop pointer: if the awaiting coroutine is destroyed (timeout, loop
/// teardown) the thread must not post to a loop that may be gone.
class resolve_awaiter {
 public:
  resolve_awaiter(std::string host, std::uint16_t port)
      : shared_(std::make_shared<shared>()), host_(std::move(host)), port_(port) {}
  resolve_awaiter(const resolve_awaiter&) = delete;
  ~resolve_awaiter() {
    std::lock_guard lock(shared_->mutex);
    shared_->loop = nullptr;
  }
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> waiting) {
    shared_->loop = &event_loop::current();
    shared_->waiting = waiting;
    std::thread([s = shared_, host = host_, port = port_] {
      int gai_error = 0;
      auto addresses = resolve_blocking(host, port, 0, gai_error);
      std::lock_guard lock(s->mutex);
      s->addresses = std::move(addresses);
      s->gai_error = gai_error;
      if (s->loop != nullptr) {
        s->loop->post([s] {
          std::coroutine_handle<> h;
          {
            std::lock_guard inner(s->mutex);
            if (s->loop == nullptr) return;
            h = s->waiting;
          }
          h.resume();
        });
      }
    }).detach();
  }
  std::vector<resolved_address> await_resume() {
    std::lock_guard lock(shared_->mutex);
    if (shared_->addresses.empty()) {
      throw stream_closed_error(
          "connect: cannot resolve \"" + host_ + "\": " + ::gai_strerror(shared_->gai_error),
          os_error(EHOSTUNREACH));
    }
    return std::move(shared_->addresses);
  }

 private:
  struct shared {
    std::mutex mutex;
    event_loop* loop = nullptr;
    std::coroutine_handle<> waiting;
    std::vector<resolved_address> addresses;
    int gai_error = 0;
  };
  std::shared_ptr<shared> shared_;
  std::string host_;
  std::uint16_t port_;
};

/// Closes an fd on scope exit unless released; tells the backend first (epoll registration).
class fd_guard {
 public:
  explicit fd_guard(int fd) : fd_(fd) {}
  fd_guard(const fd_guard&) = delete;
  ~fd_guard() {
    if (fd_ >= 0) {
      if (event_loop* loop = event_loop::current_or_null()) loop->backend_impl().forget_fd(fd_);
      ::close(fd_);
    }
  }
  int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

/// Connects to the first of `addresses` that accepts; resolves `host` first if `addresses`
/// is empty. `host` names the target in error messages ("" for an endpoint list).
task<tcp_stream> connect_without_timeout(std::vector<resolved_address> addresses, std::string host,
                                         std::uint16_t port, connect_options options) {
  if (addresses.empty()) addresses = co_await resolve_awaiter(host, port);
  const std::string target = host.empty() ? std::string() : " (" + host + ")";
  std::exception_ptr last;
  for (const resolved_address& a : addresses) {
    fd_guard fd(::socket(a.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) {
      int err = errno;
      last = std::make_exception_ptr(stream_closed_error(
          std::string("connect: socket() failed: ") + std::strerror(err), os_error(err)));
      continue;
    }
    int rc =
        co_await io::connect(fd.get(), reinterpret_cast<const sockaddr*>(&a.address), a.length);
    if (rc == 0) {
      tcp_stream s(fd.release(), options.stream);
      if (options.nodelay) s.set_nodelay(true);
      co_return s;
    }
    last = std::make_exception_ptr(
        stream_closed_error("connect to " + to_endpoint(a.address).to_string() + target +
                                " failed: " + std::strerror(-rc),
                            os_error(-rc)));
  }
  std::rethrow_exception(last);
}

/// Eager like every stream operation (S4): the first step (resolution or the first
/// attempt) starts at the call.
task<tcp_stream> start_connect(std::vector<resolved_address> addresses, std::string host,
                               std::uint16_t port, const connect_options& options) {
  auto work = connect_without_timeout(std::move(addresses), std::move(host), port, options);
  if (options.timeout.count() > 0) return start(with_timeout(options.timeout, std::move(work)));
  return start(std::move(work));
}

}  // namespace

std::string endpoint::to_string() const {
  if (address.find(':') != std::string::npos) return "[" + address + "]:" + std::to_string(port);
  return address + ":" + std::to_string(port);
}

tcp_stream::tcp_stream(int connected_fd, stream_options options)
    : stream(connected_fd, transport_kind::socket, options) {
  int flags = ::fcntl(connected_fd, F_GETFL);
  if (flags >= 0 && !(flags & O_NONBLOCK)) ::fcntl(connected_fd, F_SETFL, flags | O_NONBLOCK);
}

task<tcp_stream> tcp_stream::connect(std::string_view host, std::uint16_t port,
                                     connect_options options) {
  std::vector<resolved_address> addresses(1);
  if (!parse_numeric(host, port, addresses[0])) addresses.clear();  // resolved by the task
  return start_connect(std::move(addresses), std::string(host), port, options);
}

task<tcp_stream> tcp_stream::connect(std::span<const endpoint> endpoints, connect_options options) {
  if (endpoints.empty()) throw std::invalid_argument("tcp_stream::connect: no endpoints given");
  std::vector<resolved_address> addresses(endpoints.size());
  for (std::size_t i = 0; i < endpoints.size(); ++i) {
    if (!parse_numeric(endpoints[i].address, endpoints[i].port, addresses[i])) {
      throw std::invalid_argument("tcp_stream::connect: \"" + endpoints[i].address +
                                  "\" is not a numeric IP address");
    }
  }
  return start_connect(std::move(addresses), std::string(), 0, options);
}

void tcp_stream::set_nodelay(bool enabled) noexcept {
  if (core_ == nullptr || core_->closed() || core_->fd() < 0) return;
  int value = enabled ? 1 : 0;
  // EINVAL/ECONNRESET and "not a TCP socket" are ignored on purpose (S49).
  (void)::setsockopt(core_->fd(), IPPROTO_TCP, TCP_NODELAY, &value, sizeof value);
}

endpoint tcp_stream::local_endpoint() const {
  if (core_ == nullptr || core_->fd() < 0) return {};
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(core_->fd(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  return to_endpoint(ss);
}

endpoint tcp_stream::remote_endpoint() const {
  if (core_ == nullptr || core_->fd() < 0) return {};
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(core_->fd(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  return to_endpoint(ss);
}

// ---------------------------------------------------------------- listener

struct tcp_listener::state {
  int fd = -1;
  endpoint bound;
  std::vector<detail::io_op*> pending_accepts;
  event_loop* loop = nullptr;
  // The last accept found a connection waiting: more may be queued behind it (a burst), so
  // the next accept tries accept4() at once instead of waiting a loop turn for the backend.
  // The first EAGAIN or error turns this off again, and every 64th accept of a streak goes
  // through the backend anyway so that a flood of connects cannot starve the rest of the loop.
  bool backlog_hot = false;
  unsigned direct_accepts = 0;
};

namespace {

/// One accept, registered with its listener so that closing the listener cancels it.
class accept_awaiter final : detail::io_handler, detail::ready_node {
 public:
  explicit accept_awaiter(std::shared_ptr<tcp_listener::state> s) : state_(std::move(s)) {}
  accept_awaiter(const accept_awaiter&) = delete;
  ~accept_awaiter() {
    if (op_ != nullptr) {
      std::erase(state_->pending_accepts, op_);
      // An accepted fd that arrives for an orphan is closed by the loop (no leak).
      loop_->cancel_now(*op_);
      loop_->orphan(*op_);
    }
  }
  /// A connection already queued is taken without suspending (see state::backlog_hot).
  bool await_ready() noexcept {
    if (!state_->backlog_hot || ++state_->direct_accepts % 64 == 0) return false;
    ++event_loop::current().mutable_stats().syscalls;
    int fd = ::accept4(state_->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      result_ = fd;
      return true;
    }
    state_->backlog_hot = false;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) {
      return false;  // nothing decided: wait through the backend as usual
    }
    result_ = -errno;  // EMFILE and friends: reported exactly as the backend would
    return true;
  }
  void await_suspend(std::coroutine_handle<> waiting) {
    waiting_ = waiting;
    loop_ = &event_loop::current();
    op_ = loop_->acquire_op();
    op_->kind = detail::op_kind::accept;
    op_->fd = state_->fd;
    op_->handler = this;
    state_->pending_accepts.push_back(op_);
    loop_->submit(*op_);
  }
  int await_resume() const noexcept { return result_; }

 private:
  void on_io_complete(detail::io_op& op) override {
    result_ = op.result;
    state_->backlog_hot = op.result >= 0;
    std::erase(state_->pending_accepts, &op);
    loop_->release_op(&op);
    op_ = nullptr;
    loop_->schedule(*this);
  }
  void run_ready() override { waiting_.resume(); }

  std::shared_ptr<tcp_listener::state> state_;
  event_loop* loop_ = nullptr;
  detail::io_op* op_ = nullptr;
  std::coroutine_handle<> waiting_;
  int result_ = 0;
};

}  // namespace

tcp_listener::tcp_listener() noexcept = default;
tcp_listener::tcp_listener(tcp_listener&&) noexcept = default;
tcp_listener& tcp_listener::operator=(tcp_listener&& other) noexcept {
  if (this != &other) {
    close();
    state_ = std::move(other.state_);
  }
  return *this;
}
tcp_listener::~tcp_listener() { close(); }

tcp_listener tcp_listener::bind(std::string_view host, std::uint16_t port, listen_options options) {
  resolved_address a;
  if (!parse_numeric(host, port, a)) {
    int gai_error = 0;
    auto list = resolve_blocking(std::string(host), port, AI_PASSIVE, gai_error);
    if (list.empty()) {
      throw error("tcp_listener::bind: cannot resolve \"" + std::string(host) +
                  "\": " + ::gai_strerror(gai_error));
    }
    a = list.front();
  }
  int fd = ::socket(a.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int err = errno;
    throw error(std::string("tcp_listener::bind: socket() failed: ") + std::strerror(err),
                os_error(err));
  }
  int one = 1;
  if (options.reuse_address) ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (options.reuse_port) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&a.address), a.length) != 0 ||
      ::listen(fd, options.backlog) != 0) {
    int err = errno;
    ::close(fd);
    throw error("tcp_listener::bind: cannot listen on " + to_endpoint(a.address).to_string() +
                    ": " + std::strerror(err),
                os_error(err));
  }
  tcp_listener listener;
  try {
    listener.state_ = std::make_shared<state>();
  } catch (...) {  // B13: the fd is not ours to leak
    ::close(fd);
    throw;
  }
  listener.state_->fd = fd;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  listener.state_->bound = to_endpoint(ss);
  return listener;
}

task<tcp_stream> tcp_listener::accept(stream_options options) {
  if (!state_ || state_->fd < 0)
    throw stream_closed_error("tcp_listener::accept: listener is closed");
  std::shared_ptr<state> s = state_;  // the listener may be destroyed while we wait
  int fd = co_await accept_awaiter(s);
  if (fd < 0) {
    if (fd == -ECANCELED && s->fd < 0) {
      throw stream_closed_error("tcp_listener::accept: listener closed while accepting");
    }
    // D1: name the errno too ("Too many open files (EMFILE)"), so a log line says which limit.
    std::string text = std::string("tcp_listener::accept: ") + std::strerror(-fd);
    if (const char* name = ::strerrorname_np(-fd)) text += std::string(" (") + name + ")";
    throw error(text, os_error(-fd));
  }
  co_return tcp_stream(fd, options);
}

std::uint16_t tcp_listener::port() const noexcept { return state_ ? state_->bound.port : 0; }
endpoint tcp_listener::local_endpoint() const { return state_ ? state_->bound : endpoint{}; }
int tcp_listener::native_handle() const noexcept { return state_ ? state_->fd : -1; }

void tcp_listener::close() noexcept {
  if (!state_ || state_->fd < 0) return;
  int fd = std::exchange(state_->fd, -1);
  event_loop* loop = event_loop::current_or_null();
  if (loop != nullptr) {
    // B16: pending accepts would otherwise stay in the kernel after close(fd).
    // Why cancel_now: on io_uring an accept queued in this turn may not have reached the
    // kernel yet; closing the fd first would let it run on a closed (or reused) fd number.
    for (detail::io_op* op : std::vector<detail::io_op*>(state_->pending_accepts)) {
      loop->cancel_now(*op);
    }
    loop->backend_impl().forget_fd(fd);
  }
  ::close(fd);
}

std::pair<tcp_stream, tcp_stream> stream_pair(stream_options options) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    int err = errno;
    throw error(std::string("stream_pair: socketpair failed: ") + std::strerror(err),
                os_error(err));
  }
  tcp_stream first;
  try {
    first = tcp_stream(fds[0], options);
  } catch (...) {  // B13: fds[0] was closed by the failed adoption; fds[1] is ours
    ::close(fds[1]);
    throw;
  }
  return {std::move(first), tcp_stream(fds[1], options)};
}

}  // namespace corio
