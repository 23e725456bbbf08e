// corio/timeout.hpp - sleep_for, sleep_until, with_timeout and with_deadline.
#pragma once

#include <chrono>
#include <coroutine>
#include <exception>
#include <optional>
#include <string>
#include <utility>

#include "corio/errors.hpp"
#include "corio/loop.hpp"
#include "corio/task.hpp"

namespace corio {
namespace detail {

/// When a timer fires: `delay` after it is armed, or at `deadline` when one is given.
struct timer_spec {
  std::chrono::nanoseconds delay{};
  std::optional<event_loop::clock::time_point> deadline;

  timer_handle arm(event_loop& loop, ready_node& node) const {
    return deadline ? loop.add_timer_at(*deadline, node) : loop.add_timer(delay, node);
  }
};

/// Suspends until a loop timer fires; destroying it while suspended removes the timer.
class sleep_awaiter final : ready_node {
 public:
  explicit sleep_awaiter(timer_spec when) noexcept : when_(when) {}
  sleep_awaiter(const sleep_awaiter&) = delete;
  ~sleep_awaiter() {
    if (loop_ != nullptr) loop_->cancel_timer(timer_);
  }
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> waiting) {
    waiting_ = waiting;
    loop_ = &event_loop::current();
    timer_ = when_.arm(*loop_, *this);
  }
  void await_resume() noexcept { loop_ = nullptr; }

 private:
  void run_ready() override {
    loop_ = nullptr;
    waiting_.resume();
  }
  timer_spec when_;
  event_loop* loop_ = nullptr;
  timer_handle timer_;
  std::coroutine_handle<> waiting_;
};

/// A limit as an error message states it: whole milliseconds in "ms", otherwise whole
/// microseconds in "us", otherwise nanoseconds (a limit under 1 ms is not "0 ms").
inline std::string limit_text(std::chrono::nanoseconds limit) {
  using namespace std::chrono;
  if (limit % milliseconds(1) == nanoseconds::zero()) {
    return std::to_string(duration_cast<milliseconds>(limit).count()) + " ms";
  }
  if (limit % microseconds(1) == nanoseconds::zero()) {
    return std::to_string(duration_cast<microseconds>(limit).count()) + " us";
  }
  return std::to_string(limit.count()) + " ns";
}

template <class T>
class timeout_awaiter;

/// The coroutine that runs the inner task of with_timeout; its frame is destroyed by the
/// awaiter, which is how a timeout cancels the inner work.
template <class T>
struct timeout_child {
  struct promise_type : pooled {
    timeout_awaiter<T>* owner = nullptr;
    timeout_child get_return_object() noexcept {
      return {std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    struct final_awaiter {
      bool await_ready() noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> self) noexcept {
        return self.promise().owner->inner_finished();
      }
      void await_resume() noexcept {}
    };
    final_awaiter final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }  // the body catches everything
  };
  std::coroutine_handle<promise_type> handle;
};

template <class T>
using timeout_storage = std::conditional_t<std::is_reference_v<T>, std::remove_reference_t<T>*,
                                           std::conditional_t<std::is_void_v<T>, bool, T>>;

/// Awaits `inner`, which stays in the timeout_awaiter so that the timer can see whether
/// its operation was decided.
template <class T>
timeout_child<T> run_inner(task<T>& inner, std::optional<timeout_storage<T>>& out,
                           std::exception_ptr& failure) {
  try {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(inner);
      out.emplace(true);
    } else if constexpr (std::is_reference_v<T>) {
      out.emplace(&(co_await std::move(inner)));
    } else {
      out.emplace(co_await std::move(inner));
    }
  } catch (...) {
    failure = std::current_exception();
  }
}

template <class T>
class timeout_awaiter final : ready_node {
 public:
  timeout_awaiter(timer_spec limit, task<T> inner) noexcept
      : limit_(limit), inner_(std::move(inner)) {}
  timeout_awaiter(const timeout_awaiter&) = delete;
  ~timeout_awaiter() { cleanup(); }

  bool await_ready() const noexcept { return inner_.is_ready(); }

  std::coroutine_handle<> await_suspend(std::coroutine_handle<> waiting) {
    waiting_ = waiting;
    loop_ = &event_loop::current();
    child_ = run_inner<T>(inner_, value_, failure_).handle;
    child_.promise().owner = this;
    timer_ = limit_.arm(*loop_, *this);
    timer_armed_ = true;
    return child_;
  }

  T await_resume() {
    if (timed_out_) {
      if (limit_.deadline) {
        throw timeout_error("with_deadline: the operation did not finish by its deadline");
      }
      throw timeout_error("with_timeout: the operation did not finish within " +
                          limit_text(limit_.delay));
    }
    if (!child_) return std::move(inner_).operator co_await().await_resume();
    cleanup();
    if (failure_) std::rethrow_exception(failure_);
    if constexpr (std::is_void_v<T>) {
      return;
    } else if constexpr (std::is_reference_v<T>) {
      return **value_;
    } else {
      return std::move(*value_);
    }
  }

  /// The inner task finished first: stop the timer and resume the waiter.
  std::coroutine_handle<> inner_finished() noexcept {
    disarm();
    return waiting_;
  }

 private:
  /// The timer fired first: destroy the inner work (withdrawing its operation) and resume.
  void run_ready() override {
    timer_armed_ = false;
    // Why: the operation may have been decided earlier in this same loop turn (a close() from
    // a callback, a completion reaped with the timer), its resumption queued behind this
    // timer. A decided read has consumed its bytes (S12), so timing out now would lose them:
    // the result exists, so it passes through when the resumption runs.
    if (inner_.is_ready()) return;
    timed_out_ = true;
    cancel_inner();
    waiting_.resume();
  }
  /// Destroys the child frame, then the inner task, which withdraws its operation (S13).
  void cancel_inner() noexcept {
    if (child_) std::exchange(child_, nullptr).destroy();
    inner_ = task<T>();
  }
  void disarm() noexcept {
    if (timer_armed_) {
      loop_->cancel_timer(timer_);
      timer_armed_ = false;
    }
    unqueue();
  }
  void cleanup() noexcept {
    if (loop_ != nullptr) disarm();
    cancel_inner();
  }

  timer_spec limit_;
  task<T> inner_;
  event_loop* loop_ = nullptr;
  timer_handle timer_;
  bool timer_armed_ = false;
  bool timed_out_ = false;
  std::coroutine_handle<> waiting_;
  std::coroutine_handle<typename timeout_child<T>::promise_type> child_;
  std::optional<timeout_storage<T>> value_;
  std::exception_ptr failure_;
};

/// with_timeout's and with_deadline's coroutine, for inner work that is not decided yet.
template <class T>
task<T> timed(timer_spec limit, task<T> inner) {
  co_return co_await timeout_awaiter<T>(limit, std::move(inner));
}
template <>
inline task<void> timed(timer_spec limit, task<void> inner) {
  co_await timeout_awaiter<void>(limit, std::move(inner));
}

}  // namespace detail

/// Completes after `delay`, through the loop's timers (S65). Destroying the task cancels it.
inline task<void> sleep_for(std::chrono::nanoseconds delay) {
  co_await detail::sleep_awaiter(detail::timer_spec{delay, std::nullopt});
}

/// Completes at `deadline` (event_loop::clock, i.e. steady_clock), through the loop's timers
/// (S65): a deadline already past completes in the next iteration, time_point::max() never.
/// Destroying the task cancels it.
inline task<void> sleep_until(event_loop::clock::time_point deadline) {
  co_await detail::sleep_awaiter(detail::timer_spec{{}, deadline});
}

/// Runs `inner` with a relative time limit (S63). If it finishes first its value or error
/// passes through; otherwise the inner work is destroyed at its current suspension point
/// and timeout_error is thrown. Destroying the inner work withdraws a pending stream read
/// with no byte lost (S13, D9), abandons a write's wait without un-sending it (S28), and
/// cancels a low-level operation. A stream operation decided in the loop turn in which the
/// limit expires (its resumption still queued) counts as finished first, so its result is
/// never dropped. That check sees only the operation `inner` itself is: when `inner` is a
/// coroutine, an operation it awaits that was decided but not yet resumed is destroyed with
/// it, and a read's bytes are then gone (S13's completed-read case). A task already decided at the
/// call (a read served from the buffer, S7) is returned as it is: no timer is set, and even a zero
/// limit cannot expire.
template <class T>
task<T> with_timeout(std::chrono::nanoseconds limit, task<T> inner) {
  // Decided at the call (a read served from the buffer): nothing to time, so no timer and no
  // coroutine frame; the task itself carries the value or the error.
  if (inner.is_ready()) return inner;
  return detail::timed(detail::timer_spec{limit, std::nullopt}, std::move(inner));
}

/// Runs `inner` with an absolute time limit, as with_timeout in every other respect (S63):
/// one deadline shared by several steps ("the whole request by t") does not drift as each
/// step subtracts what the last one took. A deadline already past times the work out in the
/// next iteration unless it is decided at the call; the timeout_error says "with_deadline".
template <class T>
task<T> with_deadline(event_loop::clock::time_point deadline, task<T> inner) {
  if (inner.is_ready()) return inner;
  return detail::timed(detail::timer_spec{{}, deadline}, std::move(inner));
}

}  // namespace corio
