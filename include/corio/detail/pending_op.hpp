// corio/detail/pending_op.hpp - the state shared by an eager operation and its task.
#pragma once

#include <cassert>
#include <coroutine>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "corio/detail/frame_allocator.hpp"
#include "corio/detail/ready_queue.hpp"

namespace corio::detail {

/// Queues `node` on the current thread's event loop; it runs in the next iteration (S6, S59).
void schedule(ready_node& node) noexcept;

/// Holds the value of a T, a T&, or nothing for void.
template <class T>
class result_storage {
 public:
  template <class U>
  void emplace(U&& value) {
    value_.emplace(std::forward<U>(value));
  }
  T take() { return std::move(*value_); }

 private:
  std::optional<T> value_;
};
template <class T>
class result_storage<T&> {
 public:
  void emplace(T& value) noexcept { value_ = std::addressof(value); }
  T& take() noexcept { return *value_; }

 private:
  T* value_ = nullptr;
};

class pending_op_base;

/// Whoever produces an operation's result (a stream's read slot, a write queue, …).
/// It is told when the task gives up waiting so that it can withdraw the operation (S13).
class op_owner {
 public:
  virtual void abandon(pending_op_base& op) noexcept = 0;

 protected:
  ~op_owner() = default;
};

/// An operation that was started eagerly and is awaited through a task (S4, §17.2).
/// Two references: the task's and the producer's. The producer calls complete()/fail();
/// the task awaits it. Lives in the thread's recycling pool: no malloc per operation.
class pending_op_base : public pooled, public ready_node {
 public:
  pending_op_base() = default;
  pending_op_base(const pending_op_base&) = delete;
  pending_op_base& operator=(const pending_op_base&) = delete;

  bool decided() const noexcept { return decided_; }
  bool has_waiter() const noexcept { return static_cast<bool>(waiter_); }
  void set_waiter(std::coroutine_handle<> waiter) noexcept { waiter_ = waiter; }

  /// The producer keeps a reference and may be told to withdraw. Call once.
  void attach_owner(op_owner* owner) noexcept {
    owner_ = owner;
    ++refs_;
  }
  /// The producer lets go (after it has decided the op, or when abandon() is called).
  void detach_owner() noexcept {
    owner_ = nullptr;
    release();
  }

  void fail(std::exception_ptr error) noexcept {
    assert(!decided_);
    error_ = std::move(error);
    finish();
  }

  /// The task is destroyed: withdraw a pending operation, then drop the task's reference.
  void abandon_by_task() noexcept {
    waiter_ = nullptr;
    unqueue();
    if (!decided_ && owner_ != nullptr) owner_->abandon(*this);
    release();
  }

 protected:
  virtual ~pending_op_base() = default;
  void finish() noexcept {
    decided_ = true;
    if (waiter_) schedule(*this);
  }
  void run_ready() override {
    if (waiter_) std::exchange(waiter_, nullptr).resume();
  }
  void rethrow_if_failed() {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void release() noexcept {
    if (--refs_ == 0) delete this;
  }

  int refs_ = 1;  // the task's
  bool decided_ = false;
  std::coroutine_handle<> waiter_;
  op_owner* owner_ = nullptr;
  std::exception_ptr error_;
};

template <class T>
class pending_op final : public pending_op_base {
 public:
  template <class U>
  void complete(U&& value) {
    value_.emplace(std::forward<U>(value));
    finish();
  }
  T take() {
    rethrow_if_failed();
    return value_.take();
  }

 private:
  result_storage<T> value_;
};

// Not final: a stream's write op derives from it to link itself into the stream's waiters.
template <>
class pending_op<void> : public pending_op_base {
 public:
  void complete() noexcept { finish(); }
  void take() { rethrow_if_failed(); }
};

}  // namespace corio::detail
