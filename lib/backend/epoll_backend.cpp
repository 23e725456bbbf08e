// The epoll backend: try the non-blocking syscall first; on EAGAIN wait for an edge.
#include <errno.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <vector>

#include "backend/backend.hpp"

namespace corio::detail {
namespace {

bool waits_for_input(const io_op& op) {
  switch (op.kind) {
    case op_kind::recv:
    case op_kind::read:
    case op_kind::accept:
      return true;
    default:
      return false;
  }
}

/// The ops waiting on one fd, in submission order, per direction.
struct fd_waiters {
  bool registered = false;
  // A receive returned less than it asked for (or EAGAIN): the socket or pipe is drained, and
  // with edge-triggered epoll the next arrival raises a new edge. Until it does, a new
  // receive waits without trying the syscall that would only say EAGAIN.
  bool input_drained = false;
  // The peer hung up or the socket failed: no edge will follow, so every receive must try
  // its syscall (it returns the EOF or the error).
  bool input_final = false;
  io_op* input_head = nullptr;
  io_op* output_head = nullptr;
  // io::poll ops: any edge may be theirs (POLLIN|POLLOUT, POLLPRI), and each asks for
  // different events, so every edge retries each of them.
  io_op* poll_head = nullptr;
};

void append(io_op*& head, io_op& op) {
  op.next_waiter = nullptr;
  io_op** slot = &head;
  while (*slot != nullptr) slot = &(*slot)->next_waiter;
  *slot = &op;
}

bool remove(io_op*& head, io_op& op) {
  for (io_op** slot = &head; *slot != nullptr; slot = &(*slot)->next_waiter) {
    if (*slot == &op) {
      *slot = op.next_waiter;
      op.next_waiter = nullptr;
      return true;
    }
  }
  return false;
}

class epoll_backend final : public backend_base {
 public:
  epoll_backend(event_loop& loop, const loop_options&) : loop_(loop) {
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) {
      throw backend_unavailable_error(std::string("epoll_create1 failed: ") + std::strerror(errno));
    }
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) {
      int saved = errno;
      ::close(epoll_fd_);
      throw backend_unavailable_error(std::string("eventfd failed: ") + std::strerror(saved));
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wake_fd_;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  }

  ~epoll_backend() override {
    ::close(wake_fd_);
    ::close(epoll_fd_);
  }

  corio::backend kind() const noexcept override { return corio::backend::epoll; }

  void submit(io_op& op) override {
    ++in_flight_;
    try {
      start(op);
    } catch (...) {  // B13: std::bad_alloc from the maps; the op was not taken
      --in_flight_;
      throw;
    }
  }

  void start(io_op& op) {
    if (op.kind == op_kind::timeout) {
      auto when = deadline_after(std::chrono::nanoseconds(op.timeout_ns));
      timeouts_.emplace(when, &op);
      return;
    }
    if (op.kind == op_kind::cancel) {
      op.result = 0;
      push_done(op);
      return;
    }
    if (known_drained(op)) {
      if (op.sink != nullptr) op.sink->idle();
      append(slot(op.fd).input_head, op);
      return;
    }
    if (attempt(op)) {
      push_done(op);
      return;
    }
    wait_for_readiness(op);
  }

  void cancel(io_op& op) noexcept override {
    if (op.kind == op_kind::timeout) {
      for (auto it = timeouts_.begin(); it != timeouts_.end(); ++it) {
        if (it->second == &op) {
          timeouts_.erase(it);
          op.result = -ECANCELED;
          push_done(op);
          return;
        }
      }
      return;
    }
    fd_waiters* w = find(op.fd);
    if (w == nullptr) return;
    if (remove(w->input_head, op) || remove(w->output_head, op) || remove(w->poll_head, op)) {
      op.result = -ECANCELED;
      push_done(op);
    }
  }

  // Why: epoll ops only touch memory inside the syscall, so a cancel is immediate.
  void cancel_now(io_op& op) noexcept override { cancel(op); }

  void forget_fd(int fd) noexcept override {
    fd_waiters* w = find(fd);
    if (w == nullptr) return;
    // Ops still waiting on a closing fd complete as cancelled.
    for (io_op** head : {&w->input_head, &w->output_head, &w->poll_head}) {
      while (io_op* op = *head) {
        *head = op->next_waiter;
        op->next_waiter = nullptr;
        op->result = -ECANCELED;
        push_done(*op);
      }
    }
    if (w->registered) {
      count_syscall();
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    }
    *w = fd_waiters{};
  }

  void wait(std::optional<std::chrono::nanoseconds> timeout) override {
    int timeout_ms = -1;
    if (done_head_ != nullptr) {
      timeout_ms = 0;
    } else {
      auto limit = timeout;
      if (!timeouts_.empty()) {
        auto until = std::chrono::duration_cast<std::chrono::nanoseconds>(
            timeouts_.begin()->first - std::chrono::steady_clock::now());
        if (until < std::chrono::nanoseconds::zero()) until = std::chrono::nanoseconds::zero();
        if (!limit || until < *limit) limit = until;
      }
      if (limit) {
        // Round up so that a timer due in 0.3 ms does not spin with timeout 0; a timer weeks
        // away waits INT_MAX ms and is looked at again then (a negative int would block).
        const auto ms = limit->count() / 1'000'000 + (limit->count() % 1'000'000 != 0 ? 1 : 0);
        timeout_ms = static_cast<int>(std::min<long long>(ms, INT_MAX));
      }
    }
    epoll_event events[256];
    count_syscall();
    ++loop_.mutable_stats().waits;
    int n = ::epoll_wait(epoll_fd_, events, 256, timeout_ms);
    if (n < 0 && errno != EINTR) {
      throw error(std::string("epoll_wait failed: ") + std::strerror(errno),
                  std::error_code(errno, std::generic_category()));
    }
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == wake_fd_) {
        std::uint64_t value;
        count_syscall();
        (void)!::read(wake_fd_, &value, sizeof value);
        continue;
      }
      on_readiness(fd, events[i].events);
    }
    auto now = std::chrono::steady_clock::now();
    while (!timeouts_.empty() && timeouts_.begin()->first <= now) {
      io_op* op = timeouts_.begin()->second;
      timeouts_.erase(timeouts_.begin());
      op->result = -ETIME;
      push_done(*op);
    }
    // Deliver what completed so far; ops that handlers submit and that complete at once are
    // delivered by the next wait (no unbounded loop inside one turn). Why an intrusive queue:
    // completing (also from noexcept cancel paths) never allocates, and if a handler throws
    // (std::bad_alloc, B13) the ops not yet delivered stay queued for the next wait.
    if (io_op* last = done_last_) {
      for (;;) {
        io_op* op = pop_done();
        const bool end = op == last;
        --in_flight_;
        deliver_completion(loop_, *op);
        if (end) break;
      }
    }
  }

  bool has_ready_completions() const noexcept override { return done_head_ != nullptr; }

  void wake() noexcept override {
    std::uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof one);
  }

  std::size_t in_flight() const noexcept override { return in_flight_; }

 private:
  void push_done(io_op& op) noexcept {
    op.next_waiter = nullptr;
    if (done_last_ != nullptr) {
      done_last_->next_waiter = &op;
    } else {
      done_head_ = &op;
    }
    done_last_ = &op;
  }

  io_op* pop_done() noexcept {
    io_op* op = done_head_;
    done_head_ = op->next_waiter;
    if (done_head_ == nullptr) done_last_ = nullptr;
    op->next_waiter = nullptr;
    return op;
  }

  void count_syscall() { ++loop_.mutable_stats().syscalls; }

  /// The loop's receive scratch block, made on first use.
  std::span<std::byte> scratch() {
    if (!scratch_) scratch_ = std::make_unique<std::byte[]>(scratch_size);
    return {scratch_.get(), scratch_size};
  }

  /// Performs the op's syscall once. True if it is decided (result set), false on EAGAIN.
  bool attempt(io_op& op) {
    count_syscall();
    ssize_t r = 0;
    switch (op.kind) {
      case op_kind::recv:
      case op_kind::read: {
        if (op.sink == nullptr) {  // orphaned while waiting: nothing wants the data
          op.result = -ECANCELED;
          return true;
        }
        // A sink without room receives into the scratch block (see recv_sink::has_room).
        const bool via_scratch = op.length <= scratch_size && !op.sink->has_room(op.length);
        std::span<std::byte> space;
        try {
          space = via_scratch ? scratch() : op.sink->prepare(op.length);
        } catch (const std::bad_alloc&) {
          // B13: the sink could not grow; the op completes with an error instead of staying
          // queued for an edge that may never come.
          op.result = -ENOMEM;
          return true;
        }
        space = space.first(std::min(space.size(), op.length));
        r = op.kind == op_kind::recv ? ::recv(op.fd, space.data(), space.size(), op.flags)
                                     : ::read(op.fd, space.data(), space.size());
        if (r > 0) {
          if (via_scratch) {
            try {
              copy_to_sink(op, space.first(static_cast<std::size_t>(r)));
            } catch (const std::bad_alloc&) {
              op.result = -ENOMEM;  // B13: as above; the bytes are lost with the stream
              return true;
            }
          } else {
            op.sink->commit(static_cast<std::size_t>(r));
          }
          if (static_cast<std::size_t>(r) < space.size()) note_drained(op);
        } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          int saved = errno;
          note_drained(op);
          op.sink->idle();  // waiting for readiness: the buffer need not stay with the stream
          errno = saved;
        }
        break;
      }
      case op_kind::send:
        r = ::send(op.fd, op.source, op.length, op.flags | MSG_NOSIGNAL);
        break;
      case op_kind::write:
        r = ::write(op.fd, op.source, op.length);
        break;
      case op_kind::sendmsg:
        if (op.iov.size() == 1) {
          // Why: one piece is the common case (a stream's single pending write); send()
          // skips the msghdr and iovec copies and the iovec import that sendmsg() pays
          // for. Same bytes, same result and errno on a socket (ENOTSOCK otherwise).
          r = ::send(op.fd, op.iov[0].iov_base, op.iov[0].iov_len,
                     static_cast<int>(op.flags) | MSG_NOSIGNAL);
          break;
        }
        op.message.msg_iov = op.iov.data();
        op.message.msg_iovlen = op.iov.size();
        r = ::sendmsg(op.fd, &op.message, static_cast<int>(op.flags) | MSG_NOSIGNAL);
        break;
      case op_kind::accept: {
        op.address_length = sizeof op.address;
        r = ::accept4(op.fd, reinterpret_cast<sockaddr*>(&op.address), &op.address_length,
                      SOCK_NONBLOCK | SOCK_CLOEXEC);
        break;
      }
      case op_kind::connect: {
        if (op.backend_tag == 0) {
          op.backend_tag = 1;
          r = ::connect(op.fd, reinterpret_cast<const sockaddr*>(&op.address), op.address_length);
          if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            // Why: an AF_UNIX connect fails with EAGAIN when the listener's backlog is full
            // (connect(2)); the socket is not connecting, and an unconnected unix socket
            // reports EPOLLOUT at once, so waiting for writability would report (SO_ERROR
            // 0) a connection that does not exist (Tornado and Asio do). Nothing signals
            // this socket when the backlog drains: the caller retries (connect_unix).
            op.result = -EAGAIN;
            return true;
          }
          if (r < 0 && errno == EINPROGRESS) errno = EAGAIN;
        } else {
          int err = 0;
          socklen_t len = sizeof err;
          r = ::getsockopt(op.fd, SOL_SOCKET, SO_ERROR, &err, &len);
          if (r == 0 && err != 0) {
            r = -1;
            errno = err;
          }
        }
        break;
      }
      case op_kind::poll: {
        pollfd p{op.fd, static_cast<short>(op.flags), 0};
        r = ::poll(&p, 1, 0);
        if (r == 0) {
          errno = EAGAIN;
          r = -1;
        } else if (r > 0) {
          r = p.revents;
        }
        break;
      }
      case op_kind::timeout:
      case op_kind::cancel:
      case op_kind::count_:
        r = 0;
        break;
    }
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
      if (errno == EINTR) return attempt(op);  // rule 4: EINTR is retried where it arises
      op.result = -errno;
      return true;
    }
    op.result = static_cast<int>(r);
    return true;
  }

  void wait_for_readiness(io_op& op) {
    if (op.fd < 0) {  // no syscall waits on a negative fd (they fail first); never index one
      op.result = -EBADF;
      push_done(op);
      return;
    }
    fd_waiters& w = slot(op.fd);
    if (!w.registered) {
      // One registration per fd for its lifetime, edge-triggered: every new arrival of data
      // or buffer space raises an edge, and every waiter retries its syscall first.
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET;
      ev.data.fd = op.fd;
      count_syscall();
      if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, op.fd, &ev) < 0 && errno != EEXIST) {
        op.result = -errno;
        push_done(op);
        return;
      }
      w.registered = true;
    }
    if (op.kind == op_kind::poll) {
      append(w.poll_head, op);
    } else {
      append(waits_for_input(op) ? w.input_head : w.output_head, op);
    }
  }

  /// True when a plain receive on op's fd would only say EAGAIN (see fd_waiters).
  bool known_drained(const io_op& op) const {
    if ((op.kind != op_kind::recv && op.kind != op_kind::read) || op.flags != 0) return false;
    const fd_waiters* w = find(op.fd);
    return w != nullptr && w->registered && w->input_drained;
  }

  void note_drained(const io_op& op) {
    if (op.flags != 0) return;  // MSG_PEEK and friends say nothing about what is queued
    fd_waiters* w = find(op.fd);
    if (w != nullptr && w->registered && !w->input_final) w->input_drained = true;
  }

  void on_readiness(int fd, std::uint32_t events) {
    fd_waiters* w = find(fd);
    if (w == nullptr || !w->registered) return;
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      w->input_drained = false;
      if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) w->input_final = true;
      retry(w->input_head);
    }
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) retry(w->output_head);
    if (w->poll_head != nullptr) retry_each(w->poll_head);
  }

  /// The waiters of `fd`, or nullptr if nothing was ever recorded for it (an entry back in
  /// its default state after forget_fd is the same as none).
  fd_waiters* find(int fd) noexcept {
    return fd >= 0 && static_cast<std::size_t>(fd) < waiters_.size() ? &waiters_[fd] : nullptr;
  }
  const fd_waiters* find(int fd) const noexcept {
    return fd >= 0 && static_cast<std::size_t>(fd) < waiters_.size() ? &waiters_[fd] : nullptr;
  }
  /// The waiters of `fd`, made on first use (may throw std::bad_alloc, B13). A reference
  /// stays valid until the next slot() call.
  fd_waiters& slot(int fd) {
    const auto index = static_cast<std::size_t>(fd);
    if (index >= waiters_.size()) waiters_.resize(std::max(index + 1, 2 * waiters_.size()));
    return waiters_[index];
  }

  /// Retries waiting ops in order; stops at the first that would still block, so that
  /// ordering among ops on one fd is kept.
  void retry(io_op*& head) {
    while (io_op* op = head) {
      if (!attempt(*op)) return;
      head = op->next_waiter;
      op->next_waiter = nullptr;
      push_done(*op);
    }
  }

  /// Retries every op of the list, completing those that are ready, in order.
  void retry_each(io_op*& head) {
    io_op** slot = &head;
    while (io_op* op = *slot) {
      if (!attempt(*op)) {
        slot = &op->next_waiter;
        continue;
      }
      *slot = op->next_waiter;
      op->next_waiter = nullptr;
      push_done(*op);
    }
  }

  event_loop& loop_;
  static constexpr std::size_t scratch_size = 64 << 10;  // the default read_chunk_size
  std::unique_ptr<std::byte[]> scratch_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  // Indexed by fd: fds are small and dense, and the lookups sit on every receive's path
  // (a hash map cost 4 lookups per echoed chunk). An fd's entry returns to its default
  // state when the fd is forgotten.
  std::vector<fd_waiters> waiters_;
  // Completed ops waiting for delivery, FIFO, linked through next_waiter (an op is in no
  // fd's waiter list once it completed).
  io_op* done_head_ = nullptr;
  io_op* done_last_ = nullptr;
  std::multimap<std::chrono::steady_clock::time_point, io_op*> timeouts_;
  std::size_t in_flight_ = 0;
};

}  // namespace

std::unique_ptr<backend_base> make_epoll_backend(event_loop& loop, const loop_options& options) {
  return std::make_unique<epoll_backend>(loop, options);
}

}  // namespace corio::detail
