// corio/task.hpp - task<T>, the awaitable every corio operation returns.
#pragma once

#include <cassert>
#include <coroutine>
#include <exception>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

#include "corio/detail/frame_allocator.hpp"
#include "corio/detail/pending_op.hpp"

namespace corio {

template <class T = void>
class task;

namespace detail {

template <class T>
class task_promise;

/// Parts of the promise that do not depend on T: continuation and error.
class task_promise_base : public pooled {
 public:
  std::suspend_always initial_suspend() noexcept { return {}; }

  struct final_awaiter {
    bool await_ready() noexcept { return false; }
    template <class Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> self) noexcept {
      // Why: symmetric transfer keeps a chain of synchronously finishing tasks from
      // growing the stack (docs/design.md, "Toolchains": g++ 12 makes it a tail call only at -O2).
      std::coroutine_handle<> next = self.promise().continuation_;
      return next ? next : std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  final_awaiter final_suspend() noexcept { return {}; }

  void unhandled_exception() noexcept { error_ = std::current_exception(); }
  void set_continuation(std::coroutine_handle<> continuation) noexcept {
    continuation_ = continuation;
  }

 protected:
  void rethrow_if_failed() {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::coroutine_handle<> continuation_;
  std::exception_ptr error_;
};

template <class T>
class task_promise final : public task_promise_base {
 public:
  task<T> get_return_object() noexcept;
  template <class U>
  requires std::is_convertible_v<U&&, T>
  void return_value(U&& value) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
    value_.emplace(std::forward<U>(value));
  }
  T take() {
    rethrow_if_failed();
    return value_.take();
  }

 private:
  result_storage<T> value_;
};

template <>
class task_promise<void> final : public task_promise_base {
 public:
  task<void> get_return_object() noexcept;
  void return_void() noexcept {}
  void take() { rethrow_if_failed(); }
};

// g++ 12 at -O2 reports the optional below as "maybe used uninitialized" when a moved-from
// task is destroyed after inlining (a known false positive of -Wmaybe-uninitialized with
// std::optional); the engaged flag guards every access.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

/// The value of a task decided at the call (S7), held in the task itself so that a read
/// served from the buffer allocates no operation state. Moving it leaves the source empty.
template <class T>
class ready_value {
 public:
  ready_value() = default;
  ready_value(ready_value&& other) noexcept(std::is_nothrow_move_constructible_v<T>)
      : value_(std::move(other.value_)) {
    other.value_.reset();
  }
  ready_value& operator=(ready_value&& other) noexcept(std::is_nothrow_move_constructible_v<T>) {
    if (this != &other) {
      value_.reset();
      if (other.value_) {
        value_.emplace(std::move(*other.value_));
        other.value_.reset();
      }
    }
    return *this;
  }
  template <class U>
  void set(U&& value) {
    value_.emplace(std::forward<U>(value));
  }
  bool has() const noexcept { return value_.has_value(); }
  void reset() noexcept { value_.reset(); }
  T take() {
    T out = std::move(*value_);
    value_.reset();
    return out;
  }

 private:
  std::optional<T> value_;
};
template <class T>
class ready_value<T&> {
 public:
  ready_value() = default;
  ready_value(ready_value&& other) noexcept : value_(std::exchange(other.value_, nullptr)) {}
  ready_value& operator=(ready_value&& other) noexcept {
    value_ = std::exchange(other.value_, nullptr);
    return *this;
  }
  void set(T& value) noexcept { value_ = std::addressof(value); }
  bool has() const noexcept { return value_ != nullptr; }
  void reset() noexcept { value_ = nullptr; }
  T& take() noexcept { return *std::exchange(value_, nullptr); }

 private:
  T* value_ = nullptr;
};
template <>
class ready_value<void> {
 public:
  ready_value() = default;
  ready_value(ready_value&& other) noexcept : done_(std::exchange(other.done_, false)) {}
  ready_value& operator=(ready_value&& other) noexcept {
    done_ = std::exchange(other.done_, false);
    return *this;
  }
  void set() noexcept { done_ = true; }
  bool has() const noexcept { return done_; }
  void reset() noexcept { done_ = false; }
  void take() noexcept { done_ = false; }

 private:
  bool done_ = false;
};

}  // namespace detail

/// A unit of asynchronous work producing a T (or void, or a reference).
///
/// A task has one of two origins:
///  - a coroutine returning task<T>: lazy, its body starts when the task is awaited
///    (or handed to event_loop::run/spawn);
///  - a stream operation: already started when the method returned (S4); awaiting it
///    does not suspend if the operation is already decided (S7).
///
/// Reads and other results are marked [[nodiscard]] where they are declared; write() is not,
/// because fire-and-forget writes are normal (S28).
/// Tasks are move-only. Destroying a task that never ran or is suspended frees its frame
/// and everything it owns; an operation it was waiting for is withdrawn or cancelled
/// (S13, architecture.md "Operation lifetime"). Exceptions propagate to the awaiter.
template <class T>
class task {
 public:
  /// The coroutine promise (lets a function returning task<T> be a coroutine).
  using promise_type = detail::task_promise<T>;
  /// The type co_await of the task produces.
  using value_type = T;

  /// An empty task (operator bool is false); awaiting it is undefined.
  task() noexcept = default;
  /// Takes over `other`'s coroutine or operation; `other` becomes empty.
  task(task&& other) noexcept
      : coroutine_(std::exchange(other.coroutine_, nullptr)),
        op_(std::exchange(other.op_, nullptr)),
        ready_(std::move(other.ready_)) {}
  /// Destroys this task's work (see the class notes), then takes over `other`'s.
  task& operator=(task&& other) noexcept {
    if (this != &other) {
      reset();
      coroutine_ = std::exchange(other.coroutine_, nullptr);
      op_ = std::exchange(other.op_, nullptr);
      ready_ = std::move(other.ready_);
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  /// Destroys the coroutine frame, or withdraws/cancels the operation still pending (S13).
  ~task() { reset(); }

  /// True if the task refers to work (a coroutine or an operation).
  explicit operator bool() const noexcept { return coroutine_ || op_ || ready_.has(); }

  /// True if awaiting would not suspend: an operation that is already decided.
  bool is_ready() const noexcept { return ready_.has() || (op_ != nullptr && op_->decided()); }

  /// Awaits the task: starts a lazy coroutine, or waits for a started operation; completes
  /// with its value or rethrows its exception. Does not suspend if the result is already
  /// decided (S7). Await a task once.
  auto operator co_await() && noexcept { return awaiter{this}; }
  /// As the rvalue overload, for a task held in a variable.
  auto operator co_await() & noexcept { return awaiter{this}; }

  /// Wraps an already started operation (used by streams and other eager operations).
  static task from_op(detail::pending_op<T>* op) noexcept {
    task t;
    t.op_ = op;
    return t;
  }
  /// A task already complete with `value` (or, for task<void>, with no arguments).
  template <class... U>
  static task ready(U&&... value) {
    task t;
    t.ready_.set(std::forward<U>(value)...);
    return t;
  }
  /// Releases ownership of the coroutine frame (used by the event loop to drive it).
  std::coroutine_handle<promise_type> release_coroutine() noexcept {
    return std::exchange(coroutine_, nullptr);
  }
  /// True if this task is a lazy coroutine (as opposed to a started operation).
  bool is_coroutine() const noexcept { return coroutine_ != nullptr; }

 private:
  friend class detail::task_promise<T>;
  explicit task(std::coroutine_handle<promise_type> coroutine) noexcept : coroutine_(coroutine) {}

  void reset() noexcept {
    if (coroutine_) std::exchange(coroutine_, nullptr).destroy();
    if (op_) std::exchange(op_, nullptr)->abandon_by_task();
    ready_.reset();
  }

  struct awaiter {
    task* self;
    bool await_ready() const noexcept { return self->is_ready(); }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> waiting) noexcept {
      if (self->coroutine_) {
        self->coroutine_.promise().set_continuation(waiting);
        return self->coroutine_;
      }
      assert(self->op_ != nullptr && "co_await on an empty task");
      self->op_->set_waiter(waiting);
      return std::noop_coroutine();
    }
    T await_resume() {
      if (self->ready_.has()) return self->ready_.take();
      if (self->coroutine_) return self->coroutine_.promise().take();
      return self->op_->take();
    }
  };

  std::coroutine_handle<promise_type> coroutine_;
  detail::pending_op<T>* op_ = nullptr;
  detail::ready_value<T> ready_;  // decided at the call: no operation state allocated
};

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace detail {

template <class T>
task<T> task_promise<T>::get_return_object() noexcept {
  return task<T>(std::coroutine_handle<task_promise<T>>::from_promise(*this));
}
inline task<void> task_promise<void>::get_return_object() noexcept {
  return task<void>(std::coroutine_handle<task_promise<void>>::from_promise(*this));
}

/// A task that is already complete with `value` (awaiting it does not suspend).
template <class T, class U>
task<T> make_ready_task(U&& value) {
  return task<T>::ready(std::forward<U>(value));
}
inline task<void> make_ready_task() { return task<void>::ready(); }
/// A task that already failed with `error`.
template <class T>
task<T> make_failed_task(std::exception_ptr error) {
  auto* op = new pending_op<T>();
  op->fail(std::move(error));
  return task<T>::from_op(op);
}

}  // namespace detail
}  // namespace corio
