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

#include <algorithm>
#include <chrono>
#include <coroutine>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "adopted_fd.hpp"
#include "backend/backend.hpp"
#include "connect_within.hpp"
#include "corio/loop.hpp"
#include "corio/timeout.hpp"
#include "stream_core.hpp"
#include "tcp_listener_state.hpp"

namespace corio {
namespace {

std::error_code os_error(int err) { return {err, std::generic_category()}; }

class resolver_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "resolver"; }
  std::string message(int code) const override { return ::gai_strerror(code); }
};

/// What a failed getaddrinfo reports: its EAI_* code, or for EAI_SYSTEM the errno behind it.
/// Why not an errno: no errno means "no such name", and EHOSTUNREACH (what connect said)
/// told a caller deciding whether to retry that the name existed but the route was down.
std::error_code resolver_error(int gai_error, int system_error) {
  if (gai_error == EAI_SYSTEM && system_error != 0) return os_error(system_error);
  return {gai_error != 0 ? gai_error : EAI_NONAME, resolver_category()};  // 0: no address
}

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
                                               int flags, std::error_code& failure) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = flags | AI_ADDRCONFIG;
  addrinfo* list = nullptr;
  std::vector<resolved_address> out;
  const int gai_error = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &list);
  if (gai_error != 0) {
    failure = resolver_error(gai_error, errno);
    return out;
  }
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    resolved_address r;
    std::memcpy(&r.address, ai->ai_addr, ai->ai_addrlen);
    r.length = ai->ai_addrlen;
    out.push_back(r);
  }
  ::freeaddrinfo(list);
  if (out.empty()) failure = resolver_error(0, 0);
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
      std::error_code failure;
      auto addresses = resolve_blocking(host, port, 0, failure);
      std::lock_guard lock(s->mutex);
      s->addresses = std::move(addresses);
      s->failure = failure;
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
      throw stream_closed_error("tcp_stream::connect to " + endpoint{host_, port_}.to_string() +
                                    ": cannot resolve \"" + host_ +
                                    "\": " + shared_->failure.message(),
                                shared_->failure);
    }
    return std::move(shared_->addresses);
  }

 private:
  struct shared {
    std::mutex mutex;
    event_loop* loop = nullptr;
    std::coroutine_handle<> waiting;
    std::vector<resolved_address> addresses;
    std::error_code failure;
  };
  std::shared_ptr<shared> shared_;
  std::string host_;
  std::uint16_t port_;
};

/// RFC 8305 §4 order: the first address's family first, then the families alternate, each
/// keeping the resolver's order ("First Address Family Count" 1). A broken family then costs
/// one connection-attempt delay before the other is tried, not one delay per address of it.
std::vector<resolved_address> interleave_families(std::vector<resolved_address> addresses) {
  const sa_family_t family = addresses.front().address.ss_family;
  if (std::all_of(addresses.begin(), addresses.end(),
                  [family](const resolved_address& a) { return a.address.ss_family == family; })) {
    return addresses;  // one family (the usual case): nothing to reorder, nothing to allocate
  }
  std::vector<resolved_address> first, other;
  for (const resolved_address& a : addresses) {
    (a.address.ss_family == family ? first : other).push_back(a);
  }
  addresses.clear();
  for (std::size_t i = 0; i < first.size() || i < other.size(); ++i) {
    if (i < first.size()) addresses.push_back(first[i]);
    if (i < other.size()) addresses.push_back(other[i]);
  }
  return addresses;
}

/// Happy Eyeballs (RFC 8305 §5; Tornado's tcpclient._Connector): the connection attempts of
/// one connect. The next address is tried as soon as an attempt fails, or `delay` after the
/// latest attempt started, whichever comes first, and attempts already running go on; the
/// first to connect wins, and every other one is cancelled and its socket closed. Awaiting
/// the race yields the winner's fd (the caller then owns it), or throws the
/// stream_closed_error of the attempt that failed last (S47, S51).
///
/// Lifetime (architecture.md, rules 1-3): an attempt's sockaddr is copied into its io_op,
/// which the loop owns and frees only when the completion arrives, so a connect the kernel
/// still runs never reads memory of a race that is gone. A losing or abandoned attempt is
/// cancelled synchronously (cancel_now) before its socket is closed, as io::operation and
/// its caller do for a single connect; its op is orphaned and goes back to the pool when
/// the kernel's completion arrives. Completions and the delay timer only record what
/// happened and queue the race; the race acts (starts, cancels, resumes) from the ready
/// queue, never from inside the backend's completion handling.
class connect_race final : detail::ready_node {
 public:
  connect_race(std::vector<resolved_address> addresses, std::chrono::nanoseconds delay,
               std::string target)
      : addresses_(std::move(addresses)),
        attempts_(addresses_.size()),
        delay_(delay),
        target_(std::move(target)) {
    for (attempt& a : attempts_) a.race = this;
    timer_node_.race = this;
  }
  connect_race(const connect_race&) = delete;
  connect_race& operator=(const connect_race&) = delete;
  /// Cancels the attempts still running and closes every socket not handed out.
  ~connect_race() {
    if (loop_ == nullptr) return;
    disarm_timer();
    for (attempt& a : attempts_) abandon(a);
  }

  /// Starts the first attempt. Ready at once only if no attempt could start (every socket()
  /// failed): completions arrive from the loop, never inside submit.
  bool await_ready() {
    loop_ = &event_loop::current();
    start_next();
    if (in_flight_ == 0) settle();
    return settled_;
  }
  void await_suspend(std::coroutine_handle<> waiting) noexcept { waiting_ = waiting; }
  int await_resume() {
    if (winner_ != nullptr) return std::exchange(winner_->fd, -1);
    const attempt& last = attempts_[last_failed_];
    std::string text = "connect to " + to_endpoint(addresses_[last_failed_].address).to_string() +
                       target_ + " failed: " + (last.socket_failed ? "socket(): " : "") +
                       std::strerror(last.error);
    if (attempts_.size() > 1) {
      text += " (the last of " + std::to_string(attempts_.size()) + " addresses to fail)";
    }
    throw stream_closed_error(text, os_error(last.error));
  }

 private:
  struct attempt final : detail::io_handler {
    connect_race* race = nullptr;
    int fd = -1;
    detail::io_op* op = nullptr;  // while the connect is in flight
    int error = 0;                // errno, once failed
    bool socket_failed = false;   // the error came from socket(), not from connect
    void on_io_complete(detail::io_op& completed) override { race->completed(*this, completed); }
  };
  struct delay_timer final : detail::ready_node {
    connect_race* race = nullptr;
    void run_ready() override {
      race->timer_armed_ = false;
      race->start_wanted_ = true;
      race->advance();
    }
  };

  /// A connect finished (from the backend's completion handling): note it, act later.
  void completed(attempt& a, detail::io_op& op) noexcept {
    const int result = op.result;
    loop_->release_op(&op);
    a.op = nullptr;
    --in_flight_;
    if (result == 0) {
      if (winner_ == nullptr) winner_ = &a;  // a later success loses: closed by advance()
    } else {
      fail(a, -result);
      start_wanted_ = true;
    }
    loop_->schedule(*this);
  }
  void run_ready() override { advance(); }

  void advance() {
    if (settled_) return;
    close_finished_losers();
    if (winner_ == nullptr && start_wanted_) start_next();
    if (winner_ == nullptr && in_flight_ > 0) return;
    settle();
    // Last: the resumed coroutine may destroy this race.
    if (waiting_) std::exchange(waiting_, nullptr).resume();
  }

  /// Starts the next address (and, with no delay, all of them); an address whose socket()
  /// fails is passed over at once. Arms the delay timer while addresses remain.
  void start_next() {
    start_wanted_ = false;
    disarm_timer();
    while (next_ < attempts_.size()) {
      const std::size_t index = next_++;
      if (!launch(attempts_[index], addresses_[index])) continue;
      if (next_ == attempts_.size() || delay_.count() <= 0) continue;
      if (delay_ != std::chrono::nanoseconds::max()) {
        try {
          timer_ = loop_->add_timer(delay_, timer_node_);
          timer_armed_ = true;
        } catch (const std::bad_alloc&) {
          // B13: without the timer the next address starts when an attempt fails.
        }
      }
      return;
    }
  }

  bool launch(attempt& a, const resolved_address& address) {
    a.fd = ::socket(address.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (a.fd < 0) {
      a.socket_failed = true;
      fail(a, errno);
      return false;
    }
    try {
      a.op = loop_->acquire_op();
      a.op->kind = detail::op_kind::connect;
      a.op->fd = a.fd;
      std::memcpy(&a.op->address, &address.address, address.length);
      a.op->address_length = address.length;
      a.op->handler = &a;
      loop_->submit(*a.op);
    } catch (const std::bad_alloc&) {
      // B13: the attempt fails (ENOMEM) and the next address is tried.
      if (a.op != nullptr) loop_->release_op(std::exchange(a.op, nullptr));  // not taken
      close_socket(a);
      fail(a, ENOMEM);
      return false;
    }
    ++in_flight_;
    return true;
  }

  void fail(attempt& a, int error) noexcept {
    a.error = error;
    last_failed_ = static_cast<std::size_t>(&a - attempts_.data());
  }

  /// Sockets of attempts that ended and did not win (failed, or connected too late).
  void close_finished_losers() noexcept {
    for (attempt& a : attempts_) {
      if (a.op == nullptr && a.fd >= 0 && &a != winner_) close_socket(a);
    }
  }

  /// Decided: a winner, or every attempt failed. The others stop now.
  void settle() noexcept {
    settled_ = true;
    disarm_timer();
    for (attempt& a : attempts_) {
      if (&a != winner_) abandon(a);
    }
  }

  void abandon(attempt& a) noexcept {
    if (a.op != nullptr) {
      // Why cancel_now first: the kernel must be done with the connect before its socket is
      // closed (rule 3; an io_uring connect queued in this turn may not have reached the
      // kernel yet). The sockaddr it reads is the op's own copy (rule 1).
      loop_->cancel_now(*a.op);
      loop_->orphan(*std::exchange(a.op, nullptr));
      --in_flight_;
    }
    close_socket(a);
  }

  void close_socket(attempt& a) noexcept {
    if (a.fd < 0) return;
    loop_->backend_impl().forget_fd(a.fd);
    ::close(std::exchange(a.fd, -1));
  }

  void disarm_timer() noexcept {
    if (timer_armed_) {
      loop_->cancel_timer(timer_);
      timer_armed_ = false;
    }
    timer_node_.unqueue();  // fired in this turn but not run yet
  }

  std::vector<resolved_address> addresses_;  // in the order they are tried
  std::vector<attempt> attempts_;            // one per address; never resized (handlers)
  std::chrono::nanoseconds delay_;
  std::string target_;  // " (host)" for error messages, or ""
  event_loop* loop_ = nullptr;
  std::coroutine_handle<> waiting_;
  delay_timer timer_node_;
  timer_handle timer_;
  bool timer_armed_ = false;
  bool start_wanted_ = false;  // an attempt failed or the delay passed: start the next
  bool settled_ = false;
  std::size_t next_ = 0;  // the next address to start
  std::size_t in_flight_ = 0;
  std::size_t last_failed_ = 0;
  attempt* winner_ = nullptr;
};

/// Connects to the first of `addresses` that accepts (connect_race); resolves `host` first
/// if `addresses` is empty. `host` names the target in error messages ("" for a list).
task<tcp_stream> connect_without_timeout(std::vector<resolved_address> addresses, std::string host,
                                         std::uint16_t port, connect_options options) {
  if (addresses.empty()) addresses = co_await resolve_awaiter(host, port);
  std::string target = host.empty() ? std::string() : " (" + host + ")";
  connect_race race(interleave_families(std::move(addresses)), options.happy_eyeballs_delay,
                    std::move(target));
  const int fd = co_await race;
  tcp_stream s(fd, options.stream);
  if (options.nodelay) s.set_nodelay(true);
  co_return s;
}

/// Eager like every stream operation (S4): the first step (resolution or the first
/// attempt) starts at the call. `target` names what is connected to in a timeout's message.
task<tcp_stream> start_connect(std::vector<resolved_address> addresses, std::string host,
                               std::uint16_t port, const connect_options& options,
                               std::string target) {
  auto work = connect_without_timeout(std::move(addresses), std::move(host), port, options);
  if (options.timeout.count() > 0) {
    return start(detail::connect_within(options.timeout, std::move(work),
                                        "tcp_stream::connect to " + target + ": not connected"));
  }
  return start(std::move(work));
}

}  // namespace

std::string endpoint::to_string() const {
  if (address.find(':') != std::string::npos) return "[" + address + "]:" + std::to_string(port);
  return address + ":" + std::to_string(port);
}

tcp_stream::tcp_stream(int connected_fd, stream_options options)
    : stream(detail::adopt_fd(connected_fd, "tcp_stream"), transport_kind::socket, options) {}

task<tcp_stream> tcp_stream::connect(std::string_view host, std::uint16_t port,
                                     connect_options options) {
  std::vector<resolved_address> addresses(1);
  if (!parse_numeric(host, port, addresses[0])) addresses.clear();  // resolved by the task
  std::string target = endpoint{std::string(host), port}.to_string();
  return start_connect(std::move(addresses), std::string(host), port, options, std::move(target));
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
  std::string target;
  for (const endpoint& e : endpoints) target += (target.empty() ? "" : ", ") + e.to_string();
  return start_connect(std::move(addresses), std::string(), 0, options, std::move(target));
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
    std::error_code failure;
    auto list = resolve_blocking(std::string(host), port, AI_PASSIVE, failure);
    if (list.empty()) {
      throw error(
          "tcp_listener::bind: cannot resolve \"" + std::string(host) + "\": " + failure.message(),
          failure);
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
std::string tcp_listener::unix_path() const { return state_ ? state_->unix_path : std::string(); }
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
  // Why unlink first: while our fd is open the socket's inode cannot be reused, so the inode
  // check cannot mistake another server's new socket file for ours.
  unlink_unix_socket(*state_);
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

const std::error_category& resolver_category() noexcept {
  static const resolver_category_impl category;
  return category;
}

}  // namespace corio
