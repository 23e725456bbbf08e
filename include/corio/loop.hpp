// corio/loop.hpp - the event loop: one per thread, io_uring or epoll underneath.
#pragma once

#include <array>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "corio/detail/frame_allocator.hpp"
#include "corio/detail/io_op.hpp"
#include "corio/detail/ready_queue.hpp"
#include "corio/errors.hpp"
#include "corio/task.hpp"

namespace corio {

/// Which kernel interface drives the loop.
enum class backend {
  automatic,  ///< io_uring, or epoll (with one message on stderr) when io_uring is unavailable
  io_uring,   ///< io_uring only: constructing the loop throws backend_unavailable_error otherwise
  epoll,      ///< epoll with non-blocking syscalls
};

/// "io_uring", "epoll" or "automatic".
const char* to_string(backend b) noexcept;
/// Parses "io_uring"/"uring", "epoll" or "automatic"/"auto"; throws std::invalid_argument.
backend parse_backend(std::string_view name);

/// Settings of an event_loop.
struct loop_options {
  corio::backend backend = backend::automatic;  ///< which backend to use
  unsigned queue_depth = 4096;                  ///< io_uring submission queue entries
  unsigned recv_buffer_count = 256;         ///< io_uring provided receive buffers (power of two)
  std::size_t recv_buffer_size = 32 << 10;  ///< size of each provided receive buffer
};

/// Counters a loop keeps; benchmarks print syscalls per message from them.
struct loop_stats {
  std::uint64_t iterations = 0;    ///< loop turns
  std::uint64_t submissions = 0;   ///< operations handed to the backend (SQEs on io_uring,
                                   ///< but a multishot receive's later requests make none)
  std::uint64_t syscalls = 0;      ///< system calls the backend made (io_uring_enter, or
                                   ///< epoll_wait/epoll_ctl plus each non-blocking I/O call)
  std::uint64_t waits = 0;         ///< calls that could block waiting for events
  std::uint64_t completions = 0;   ///< operation completions delivered
  std::uint64_t posts = 0;         ///< callbacks posted with post()
  std::uint64_t timers_fired = 0;  ///< timers that ran
  /// io_uring: times an SQE was wanted while the submission queue was full, so the queue was
  /// handed to the kernel first (C3: bursts larger than loop_options::queue_depth).
  std::uint64_t sq_full = 0;
  /// io_uring: times the kernel held completions in its overflow backlog (the completion
  /// queue was full: IORING_SQ_CQ_OVERFLOW seen, or a submission refused with EBUSY); they
  /// were reaped and delivered (C2).
  std::uint64_t cq_backlog = 0;
  /// io_uring: completions the kernel dropped (its koverflow counter). Must stay 0: a dropped
  /// completion is an operation that never finishes.
  std::uint64_t cq_overflow = 0;
  /// io_uring: multishot receives armed. One serves all the reads of a stream from its second
  /// on (the first receive is single-shot, and a large one keeps a plain stream single-shot);
  /// it is armed again only after the kernel ended it (EOF, error, ring empty) or flow
  /// control stopped it.
  std::uint64_t multishot_arms = 0;
  /// io_uring: provided buffers that arrived while their stream wanted no data and were held
  /// until a read asked for them (S45), instead of being copied into the stream.
  std::uint64_t buffers_held = 0;
  /// io_uring: receives served by one plain recv into scratch memory because every provided
  /// buffer was taken (held by streams that were not reading), multishot or single-shot.
  std::uint64_t ring_empty_fallbacks = 0;
  /// io_uring: receives that landed in a string handed whole to their stream instead of
  /// in a provided buffer copied out (streams whose receives are large; design.md "Memory").
  std::uint64_t string_receives = 0;
  std::array<std::uint64_t, detail::op_kind_count> ops_by_kind{};  ///< submissions by kind
};

class event_loop;

/// Refers to a timer made by event_loop::call_later. Copyable; must not outlive its loop.
class timer_handle {
 public:
  timer_handle() = default;
  /// Cancels the timer if it has not run yet; otherwise does nothing (S62).
  void cancel() noexcept;

 private:
  friend class event_loop;
  using key = std::pair<std::chrono::steady_clock::time_point, std::uint64_t>;
  timer_handle(event_loop* loop, key k) : loop_(loop), key_(k) {}
  event_loop* loop_ = nullptr;
  key key_{};
};

namespace detail {
/// now + delay, saturated: at most time_point::max() (never), at least the clock's epoch.
std::chrono::steady_clock::time_point deadline_after(std::chrono::nanoseconds delay) noexcept;
class backend_base;
struct root_promise;
class turn_hook;
}  // namespace detail

/// An event loop: runs coroutines, timers and posted callbacks, and drives I/O through
/// io_uring or epoll. One per thread; not thread-safe except post(). See architecture.md.
///
/// Thread: with io_uring on Linux 6.1+ the ring belongs to the thread that created the loop
/// (IORING_SETUP_SINGLE_ISSUER, which the batched completion work needs), so create, run and
/// destroy a loop on one thread; run_per_core does. run() on another thread throws
/// std::logic_error. Destroying it on another thread cannot cancel what is in flight: the
/// loop then prints a warning and leaks its tasks and buffers rather than free memory the
/// kernel may still write. The epoll backend has no such tie.
class event_loop {
 public:
  /// The clock of timers and deadlines (monotonic).
  using clock = std::chrono::steady_clock;

  /// Creates the loop and its backend. Throws backend_unavailable_error if
  /// options.backend == backend::io_uring and io_uring cannot be used.
  explicit event_loop(loop_options options = {});
  /// Destroys every spawned task, cancels the operations still in flight and waits (bounded)
  /// for their completions, so that no kernel write outlives the memory it targets.
  ~event_loop();
  event_loop(const event_loop&) = delete;
  event_loop& operator=(const event_loop&) = delete;

  /// The backend actually in use (never backend::automatic).
  corio::backend backend() const noexcept;

  /// Runs the loop until `work` finishes; returns its value or rethrows its exception.
  /// Throws stopped_error (a corio::error) if stop() is called before the task finished (the
  /// task is destroyed).
  template <class T>
  T run(task<T> work);

  /// Starts `work` detached. An exception escaping it goes to the exception handler
  /// (default: printed to stderr); it is never silently lost.
  void spawn(task<void> work);

  /// Queues `fn` for the next iteration (S60). The only member safe to call from other
  /// threads; wakes a sleeping loop.
  void post(std::function<void()> fn);

  /// Runs `fn` on this loop after `delay` (S61); timers with equal deadlines run FIFO. A
  /// negative delay is a deadline in the past; a delay past the clock's range
  /// (nanoseconds::max() for "never") never fires.
  timer_handle call_later(std::chrono::nanoseconds delay, std::function<void()> fn);

  /// Runs `fn` on this loop at `deadline`, as call_later with an absolute time (Tornado's
  /// IOLoop.call_at): a deadline already past runs in the next iteration, and
  /// clock::time_point::max() never fires. Timers with equal deadlines run FIFO.
  timer_handle call_at(clock::time_point deadline, std::function<void()> fn);

  /// Ends run() after the current iteration: run() then throws stopped_error unless its task
  /// finished in that iteration (Tornado's IOLoop.stop() makes start() return). Only a run() in
  /// progress is stopped: a stop() made while none runs is forgotten (run() starts afresh); from
  /// outside the loop's thread, post() it.
  void stop() noexcept;

  /// Counters since the loop was created, as a snapshot: a copy that does not follow the
  /// loop (`const loop_stats& s = loop.stats();` keeps the values of that moment); call
  /// again for fresh ones.
  loop_stats stats() const noexcept;

  /// Replaces the handler for exceptions escaping spawned tasks and posted callbacks.
  void set_exception_handler(std::function<void(std::exception_ptr)> handler);

  /// This thread's loop: the one whose run() is under way, else the one created or run last
  /// on this thread that still exists (so streams and timers may be made before run()).
  /// Throws std::logic_error if there is none.
  static event_loop& current();
  /// As current(), but nullptr if there is none.
  static event_loop* current_or_null() noexcept;

  // ---- Internal interface for operations and transports (not part of the stable API). ----
  /// @cond INTERNAL
  detail::io_op* acquire_op();
  void release_op(detail::io_op* op) noexcept;
  void submit(detail::io_op& op);
  /// The requester no longer wants the result: cancel and free the op when it completes.
  void orphan(detail::io_op& op) noexcept;
  /// Returns only when the kernel no longer touches memory the op refers to.
  void cancel_now(detail::io_op& op) noexcept;
  /// Closes `fd` once the given in-flight ops (orphaned) have completed.
  void close_fd_after(int fd, std::span<detail::io_op* const> in_flight) noexcept;
  void schedule(detail::ready_node& node) noexcept { ready_.push_back(node); }
  void add_turn_hook(detail::turn_hook& hook) noexcept;
  void remove_turn_hook(detail::turn_hook& hook) noexcept;
  detail::backend_base& backend_impl() noexcept { return *backend_; }
  loop_stats& mutable_stats() noexcept { return stats_; }
  void report_exception(std::exception_ptr error) noexcept;
  void add_root(detail::root_promise& root) noexcept;
  void remove_root(detail::root_promise& root) noexcept;
  timer_handle add_timer(clock::duration delay, detail::ready_node& node);
  timer_handle add_timer_at(clock::time_point deadline, detail::ready_node& node);
  void cancel_timer(const timer_handle& handle) noexcept;
  /// @endcond

 private:
  friend class timer_handle;
  void run_until(const bool& done);
  void run_once();
  void abandon_on_foreign_thread() noexcept;
  void run_turn_hooks();
  void drain_posted();
  void fire_due_timers();
  std::optional<clock::duration> wait_timeout() const;

  loop_options options_;
  std::unique_ptr<detail::backend_base> backend_;
  /// call_later callbacks whose deadline passed and that wait in the ready queue to run;
  /// cancel() still withdraws them (S62). Declared before ready_ so that it outlives the
  /// nodes ready_ may still hold when the loop is destroyed.
  std::map<timer_handle::key, detail::ready_node*> due_callbacks_;
  detail::ready_list ready_;
  std::vector<detail::io_op*> op_pool_;
  std::size_t ops_outstanding_ = 0;
  // Hooks to run before the next wait, FIFO, linked through turn_hook::next_hook_ (adding
  // one never allocates: add_turn_hook is noexcept, B13); running_hooks_ is the batch
  // run_turn_hooks is working through, from which remove_turn_hook also unlinks.
  detail::turn_hook* turn_hooks_ = nullptr;
  detail::turn_hook* turn_hooks_last_ = nullptr;
  detail::turn_hook* running_hooks_ = nullptr;
  struct timer_entry {
    std::function<void()> callback;
    detail::ready_node* node = nullptr;
  };
  std::map<timer_handle::key, timer_entry, std::less<>,
           detail::pool_allocator<std::pair<const timer_handle::key, timer_entry>>>
      timers_;
  std::uint64_t timer_sequence_ = 0;
  detail::root_promise* roots_ = nullptr;
  std::function<void(std::exception_ptr)> exception_handler_;
  loop_stats stats_;
  bool stopping_ = false;
  struct posted_queue;
  std::unique_ptr<posted_queue> posted_;
  std::vector<std::function<void()>> draining_;  // posted callbacks being queued (drain_posted)
  std::size_t draining_next_ = 0;
  event_loop* previous_current_ = nullptr;
  bool unblock_sigpipe_on_exit_ = false;
};

namespace detail {

/// Work a loop does just before it waits (streams flush their gathered writes here).
class turn_hook {
 public:
  virtual void before_wait() = 0;
  bool registered_ = false;
  turn_hook* next_hook_ = nullptr;  // the loop's intrusive list

 protected:
  ~turn_hook() = default;
};

/// The promise of a detached root coroutine (spawn and run): it destroys itself at the end
/// and is linked into its loop so that destroying the loop destroys it.
struct root_promise : ready_node {
  event_loop* loop = nullptr;
  root_promise* prev_root = nullptr;
  root_promise* next_root = nullptr;
  std::exception_ptr error;
  bool report_errors = true;
  bool* done_flag = nullptr;

  struct root_task {
    using promise_type = root_promise;
    std::coroutine_handle<root_promise> handle;
  };
  root_task get_return_object() noexcept {
    return {std::coroutine_handle<root_promise>::from_promise(*this)};
  }
  std::suspend_always initial_suspend() noexcept { return {}; }
  std::suspend_never final_suspend() noexcept { return {}; }
  void return_void() noexcept {}
  void unhandled_exception() noexcept { error = std::current_exception(); }
  void run_ready() override { std::coroutine_handle<root_promise>::from_promise(*this).resume(); }
  ~root_promise() {
    if (done_flag != nullptr) *done_flag = true;
    if (loop != nullptr) {
      if (error && report_errors) loop->report_exception(error);
      loop->remove_root(*this);
    }
  }
  static void* operator new(std::size_t size) { return pooled_allocate(size); }
  static void operator delete(void* block, std::size_t size) noexcept {
    pooled_deallocate(block, size);
  }
};

inline root_promise::root_task spawn_root(task<void> work) { co_await std::move(work); }

template <class T>
using run_storage = std::conditional_t<std::is_reference_v<T>, std::remove_reference_t<T>*, T>;

template <class T>
root_promise::root_task run_root(task<T> work, std::optional<run_storage<T>>& out,
                                 std::exception_ptr& err) {
  try {
    if constexpr (std::is_reference_v<T>) {
      out.emplace(&(co_await std::move(work)));
    } else {
      out.emplace(co_await std::move(work));
    }
  } catch (...) {
    err = std::current_exception();
  }
}
inline root_promise::root_task run_root_void(task<void> work, std::exception_ptr& err) {
  try {
    co_await std::move(work);
  } catch (...) {
    err = std::current_exception();
  }
}

/// Owns an eagerly started task's driver coroutine; the returned task's op is its result.
template <class T>
struct eager_state final : op_owner {
  pending_op<T>* op = nullptr;
  std::coroutine_handle<root_promise> root;
  void abandon(pending_op_base&) noexcept override {
    auto r = std::exchange(root, nullptr);
    std::exchange(op, nullptr)->detach_owner();
    r.destroy();  // destroys *this too (the frame owns it)
  }
  ~eager_state() {
    if (op != nullptr) {  // the loop was destroyed while the work was suspended
      op->fail(std::make_exception_ptr(
          corio::error("corio::start: the event loop was destroyed before the task finished")));
      op->detach_owner();
    }
  }
};

template <class T>
root_promise::root_task eager_root(task<T> inner, std::unique_ptr<eager_state<T>> state) {
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(inner);
      state->op->complete();
    } else {
      state->op->complete(co_await std::move(inner));
    }
  } catch (...) {
    state->op->fail(std::current_exception());
  }
  std::exchange(state->op, nullptr)->detach_owner();
  state->root = nullptr;
}

}  // namespace detail

/// Starts a lazy task now, on the current loop, running it until its first suspension, and
/// returns a task bound to the running work (eager, like stream operations, S4). Destroying
/// the returned task before the work finished destroys the work (cancelling what it awaits).
template <class T>
task<T> start(task<T> work) {
  event_loop& loop = event_loop::current();
  // Why this order: each allocation may throw std::bad_alloc (B13); nothing is linked to
  // anything until the last one (the root's frame) succeeded, so a failure leaks nothing.
  auto op = std::make_unique<detail::pending_op<T>>();
  auto state = std::make_unique<detail::eager_state<T>>();
  auto* raw = state.get();
  auto root = detail::eager_root<T>(std::move(work), std::move(state));
  raw->root = root.handle;
  raw->op = op.release();
  raw->op->attach_owner(raw);
  auto* started = raw->op;
  root.handle.promise().report_errors = false;
  loop.add_root(root.handle.promise());
  root.handle.resume();
  return task<T>::from_op(started);
}

template <class T>
T event_loop::run(task<T> work) {
  bool done = false;
  std::exception_ptr failure;
  auto finish = [&](detail::root_promise::root_task root) {
    root.handle.promise().done_flag = &done;
    root.handle.promise().report_errors = false;
    add_root(root.handle.promise());
    schedule(root.handle.promise());
    try {
      run_until(done);
    } catch (...) {
      // B13: an exception from the loop itself (std::bad_alloc in a completion): the root
      // refers to this frame's locals (done, out, failure), so it must not outlive it.
      if (!done) root.handle.destroy();
      throw;
    }
    if (!done) {
      root.handle.destroy();
      throw corio::stopped_error("event_loop::run: stop() was called before the task finished");
    }
  };
  if constexpr (std::is_void_v<T>) {
    finish(detail::run_root_void(std::move(work), failure));
    if (failure) std::rethrow_exception(failure);
  } else {
    std::optional<detail::run_storage<T>> out;
    finish(detail::run_root(std::move(work), out, failure));
    if (failure) std::rethrow_exception(failure);
    if constexpr (std::is_reference_v<T>) {
      return **out;
    } else {
      return std::move(*out);
    }
  }
}

}  // namespace corio
