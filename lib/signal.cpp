// signal_set: a sigaction handler that marks a signal pending in each set handling it and
// wakes the set's eventfd, which wait() polls through the loop.
#include "corio/signal.hpp"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "corio/errors.hpp"
#include "corio/io.hpp"

namespace corio {
namespace {

/// A set of signal numbers, bit n-1 for signal n.
using signal_mask = std::uint64_t;
static_assert(NSIG - 1 <= 64, "signal numbers must fit a 64-bit mask");
// Why: the handler may only use lock-free atomics (C++17 [support.signal]).
static_assert(std::atomic<signal_mask>::is_always_lock_free &&
              std::atomic<int>::is_always_lock_free);

constexpr signal_mask bit_of(int signal) noexcept { return signal_mask{1} << (signal - 1); }

/// One signal_set's entry in the list the handler walks. Entries are never freed (a handler
/// may be walking the list at any moment), only reused by a later set once no handler is
/// inside them (quiesce()).
struct registration {
  std::atomic<signal_mask> handled{0};  // the set's signals: what the handler delivers here
  std::atomic<signal_mask> pending{0};  // delivered, not yet returned by wait()
  std::atomic<int> wake_fd{-1};         // the set's eventfd
  std::atomic<int> handlers_inside{0};  // handlers between their check and their write
  registration* next = nullptr;         // set before the entry is published, never changed
  bool taken = false;                   // owned by a set (guarded by table_mutex)
};

// Constant-initialized (constexpr constructors): usable from any static initializer, and
// the handler never sees them half-built.
std::atomic<registration*> registrations{nullptr};
std::mutex table_mutex;  // guards taking and releasing entries, users and previous_action
int users[NSIG];         // how many sets handle each signal
struct sigaction previous_action[NSIG];  // the disposition corio's handler replaced

/// Adds one to an eventfd, making it readable (async-signal-safe).
void wake(int fd) noexcept {
  const std::uint64_t one = 1;
  const ssize_t rc = ::write(fd, &one, sizeof one);
  (void)rc;  // only a full counter (2^64 - 2 wakes unread) could fail: it is readable then
}

/// The sigaction handler. Async-signal-safe: lock-free atomics and write(2) only; errno is
/// preserved for the code it interrupted.
void on_signal(int signal) {
  const int saved_errno = errno;
  const signal_mask bit = bit_of(signal);
  for (registration* r = registrations.load(std::memory_order_acquire); r != nullptr; r = r->next) {
    // Why the count comes first (all seq_cst): a set that clears `handled` and then sees no
    // handler inside knows that every later handler will see `handled` cleared, so it may
    // close or reuse the eventfd.
    r->handlers_inside.fetch_add(1);
    if ((r->handled.load() & bit) != 0) {
      r->pending.fetch_or(bit);
      const int fd = r->wake_fd.load();
      if (fd >= 0) wake(fd);
    }
    r->handlers_inside.fetch_sub(1);
  }
  errno = saved_errno;
}

/// Returns once no handler is inside `r` any more. Handlers never block, so this is short.
void quiesce(registration& r) noexcept {
  while (r.handlers_inside.load() != 0) std::this_thread::yield();
}

/// "9 (SIGKILL)", or just "40" for a number without a name.
std::string describe(int signal) {
  std::string text = std::to_string(signal);
  if (signal > 0 && signal < NSIG) {
    if (const char* name = ::sigabbrev_np(signal)) text += std::string(" (SIG") + name + ")";
  }
  return text;
}

/// Throws std::invalid_argument, saying where and why, for a signal a set cannot handle.
void check_signal(int signal, const char* where) {
  auto refuse = [&](const std::string& why) {
    throw std::invalid_argument(std::string(where) + ": signal " + describe(signal) + " " + why);
  };
  if (signal < 1 || signal > SIGRTMAX) {
    refuse("is out of range (1.." + std::to_string(SIGRTMAX) + ")");
  }
  // Linux numbers its standard signals 1..31; glibc takes the first real-time signals (32
  // and 33: thread cancellation, setxid) for itself, and SIGRTMIN is the first one left.
  if (signal >= 32 && signal < SIGRTMIN) refuse("is reserved by the C library");
  if (signal == SIGKILL || signal == SIGSTOP) refuse("cannot be caught");
  // Why the faults are refused: the kernel raises them on the faulting instruction, and a
  // handler that returns (all a signal_set's handler can do: record and wake) resumes that
  // instruction, which faults again, forever. Only a handler that never returns (longjmp,
  // _exit) can deal with them, and sanitizers and crash reporters install their own.
  if (signal == SIGSEGV || signal == SIGBUS || signal == SIGFPE || signal == SIGILL) {
    refuse("is a synchronous fault: a handler that returns would fault again, forever");
  }
}

/// Installs corio's handler for `signal` if no set handled it yet. Under table_mutex.
void start_handling(int signal, const char* where) {
  if (users[signal]++ > 0) return;
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  struct sigaction replaced {};
  if (::sigaction(signal, &action, &replaced) != 0) {
    const int e = errno;
    --users[signal];
    throw error(std::string(where) + ": sigaction for signal " + describe(signal) +
                    " failed: " + ::strerror(e),
                std::error_code(e, std::generic_category()));
  }
  // Our own handler, left installed by other code that saved it while a set handled the
  // signal and put it back after the last set went: what it replaced is still the disposition
  // from before corio, kept in previous_action.
  const bool ours = (replaced.sa_flags & SA_SIGINFO) == 0 && replaced.sa_handler == on_signal;
  if (!ours) previous_action[signal] = replaced;
}

/// Gives `signal` its previous disposition back once the last set stops handling it, unless
/// other code has installed a disposition of its own since: that one was set later and stays
/// (putting back the older one would silently undo it). Under table_mutex.
void stop_handling(int signal) noexcept {
  if (--users[signal] > 0) return;
  struct sigaction current {};
  if (::sigaction(signal, nullptr, &current) == 0 &&
      ((current.sa_flags & SA_SIGINFO) != 0 || current.sa_handler != on_signal)) {
    return;
  }
  ::sigaction(signal, &previous_action[signal], nullptr);
}

// fork(): the child's sets must not share the parent's eventfds. A shared one lets either
// process's wait drain a wake-up meant for the other: the parent, woken by a signal of the
// child's, read the count the child's wait was about to see, and the child slept on with its
// signal marked. So the child gets a fresh eventfd under each set's fd number (dup3), and no
// kept deliveries (the kernel gives a child no pending signals either). Signals are blocked
// in the forking thread across fork() so that none is marked between the copy and the swap.
sigset_t mask_before_fork;  // guarded by table_mutex, held from before_fork to the after_*

void before_fork() noexcept {
  table_mutex.lock();  // no set is half made or half gone in the copy
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &mask_before_fork);
}

void after_fork_in_parent() noexcept {
  pthread_sigmask(SIG_SETMASK, &mask_before_fork, nullptr);
  table_mutex.unlock();
}

void after_fork_in_child() noexcept {
  for (registration* r = registrations.load(); r != nullptr; r = r->next) {
    if (!r->taken) continue;
    r->pending.store(0);
    const int fd = r->wake_fd.load();
    if (fd < 0) continue;
    // Best effort: without a new eventfd (EMFILE) the set keeps sharing the parent's.
    const int fresh = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fresh >= 0) {
      ::dup3(fresh, fd, O_CLOEXEC);
      ::close(fresh);
    }
  }
  pthread_sigmask(SIG_SETMASK, &mask_before_fork, nullptr);
  table_mutex.unlock();
}

}  // namespace

struct signal_set::state {
  int fd = -1;                    // the eventfd the handler writes and wait() polls
  registration* entry = nullptr;  // null once the set is destroyed
  bool waiting = false;           // a wait() is pending

  state() = default;
  state(const state&) = delete;
  state& operator=(const state&) = delete;
  ~state() {
    if (fd >= 0) io::close(fd);  // drops the epoll backend's registration of the fd too
  }

  /// Takes the lowest pending signal, or returns 0.
  int take_pending() noexcept {
    // Only this set clears bits (handlers only set them), so the bit seen stays set.
    const signal_mask pending = entry->pending.load();
    if (pending == 0) return 0;
    const signal_mask lowest = pending & (~pending + 1);
    entry->pending.fetch_and(~lowest);
    return std::countr_zero(lowest) + 1;
  }

  /// Stops delivering `bits` here; drops their pending deliveries. Under table_mutex.
  void stop_delivering(signal_mask bits) noexcept {
    entry->handled.fetch_and(~bits);
    quiesce(*entry);  // from here on no handler sets these bits here
    entry->pending.fetch_and(~bits);
  }

  /// The set is going: its signals are given back, its entry freed for reuse, and a pending
  /// wait() is woken to fail.
  void release() noexcept {
    if (entry == nullptr) return;
    {
      std::lock_guard lock(table_mutex);
      const signal_mask handled = entry->handled.load();
      // Why the disposition first: a signal arriving meanwhile then goes where it went
      // before the set existed, instead of into a set nobody will ask any more.
      for (int signal = 1; signal < NSIG; ++signal) {
        if ((handled & bit_of(signal)) != 0) stop_handling(signal);
      }
      stop_delivering(~signal_mask{0});
      entry->wake_fd.store(-1);
      entry->taken = false;
      entry = nullptr;
    }
    wake(fd);
  }
};

signal_set::signal_set() : state_(std::make_shared<state>()) {
  state_->fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (state_->fd < 0) {
    const int e = errno;
    throw error(std::string("signal_set: eventfd failed: ") + ::strerror(e),
                std::error_code(e, std::generic_category()));
  }
  static const bool fork_handlers_installed =
      ::pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child) == 0;
  (void)fork_handlers_installed;
  std::lock_guard lock(table_mutex);
  registration* entry = registrations.load();
  while (entry != nullptr && entry->taken) entry = entry->next;
  if (entry == nullptr) {
    entry = new registration;  // never freed: see registration
    entry->next = registrations.load();
    registrations.store(entry, std::memory_order_release);
  }
  entry->taken = true;
  entry->pending.store(0);
  entry->wake_fd.store(state_->fd);
  state_->entry = entry;
}

namespace {

signal_set::state& require_state(const std::shared_ptr<signal_set::state>& s, const char* where) {
  if (!s) throw std::logic_error(std::string(where) + ": the signal_set was moved from");
  return *s;
}

void add_to(signal_set::state& s, int signal, const char* where) {
  check_signal(signal, where);
  std::lock_guard lock(table_mutex);
  if ((s.entry->handled.load() & bit_of(signal)) != 0) return;
  // Why delivery is switched on before the handler is installed: from the moment the handler
  // runs for this signal, this set must be among those it finds.
  s.entry->handled.fetch_or(bit_of(signal));
  try {
    start_handling(signal, where);
  } catch (...) {
    s.stop_delivering(bit_of(signal));
    throw;
  }
}

}  // namespace

signal_set::signal_set(std::initializer_list<int> signals) : signal_set() {
  // Why this is enough on a throw: the delegated constructor has finished, so the destructor
  // runs and removes the signals already added.
  for (int signal : signals) add_to(*state_, signal, "signal_set::signal_set");
}

signal_set::signal_set(signal_set&& other) noexcept = default;

signal_set& signal_set::operator=(signal_set&& other) noexcept {
  if (this != &other) {
    if (state_) state_->release();
    state_ = std::move(other.state_);
  }
  return *this;
}

signal_set::~signal_set() {
  if (state_) state_->release();
}

void signal_set::add(int signal) {
  add_to(require_state(state_, "signal_set::add"), signal, "signal_set::add");
}

void signal_set::remove(int signal) {
  check_signal(signal, "signal_set::remove");
  signal_set::state& s = require_state(state_, "signal_set::remove");
  std::lock_guard lock(table_mutex);
  if ((s.entry->handled.load() & bit_of(signal)) == 0) return;
  stop_handling(signal);
  s.stop_delivering(bit_of(signal));
}

namespace {

task<int> wait_on(std::shared_ptr<signal_set::state> s) {
  if (s->waiting) {
    throw std::logic_error("signal_set::wait: another wait() on this set is already pending");
  }
  s->waiting = true;
  struct waiting_guard {
    signal_set::state& s;
    ~waiting_guard() { s.waiting = false; }
  } guard{*s};
  for (;;) {
    if (s->entry == nullptr) {
      throw error("signal_set::wait: the signal_set was destroyed while waiting",
                  std::make_error_code(std::errc::operation_canceled));
    }
    if (int signal = s->take_pending()) co_return signal;
    // Why no signal is missed: the handler sets the pending bit before it writes the
    // eventfd, and the eventfd is drained below before the bits are looked at again.
    int rc = co_await io::poll(s->fd, POLLIN);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN) {
      throw error(std::string("signal_set::wait: poll on its eventfd failed: ") + ::strerror(-rc),
                  std::error_code(-rc, std::generic_category()));
    }
    std::uint64_t count = 0;
    const ssize_t drained = ::read(s->fd, &count, sizeof count);
    (void)drained;  // -EAGAIN: nothing to drain (a spurious wake-up)
  }
}

}  // namespace

task<int> signal_set::wait() {
  require_state(state_, "signal_set::wait");
  return wait_on(state_);
}

}  // namespace corio
