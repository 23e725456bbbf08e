// corio/when.hpp - when_all and when_any: awaiting several tasks at once.
#pragma once

#include <coroutine>
#include <cstddef>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "corio/detail/frame_allocator.hpp"
#include "corio/task.hpp"

namespace corio {

/// What a task<T> contributes to a when_all or when_any result: T itself,
/// `std::monostate` for a task<void> (so that a position in a tuple or variant is still the
/// task's position), and `std::reference_wrapper<U>` for a task<U&>.
template <class T>
using when_value_t =
    std::conditional_t<std::is_void_v<T>, std::monostate,
                       std::conditional_t<std::is_reference_v<T>,
                                          std::reference_wrapper<std::remove_reference_t<T>>, T>>;

/// The result of when_any(task<Ts>...): which task finished first, and its value.
template <class... Ts>
struct when_any_result {
  /// The position (0-based, in argument order) of the task that finished first.
  std::size_t index = 0;
  /// Its value; the alternative held is the one at `index` (value.index() == index).
  std::variant<when_value_t<Ts>...> value;
  /// The tasks that had finished too when the winner was resumed, so that they could not be
  /// cancelled: a stream operation decided in the same loop turn, its resumption still queued
  /// (a read that has consumed its bytes, S12), or a task decided at the call. Position i
  /// holds such a task, or an empty task (the winner's position, and every task that was
  /// cancelled). Awaiting one does not suspend: it yields that task's value or rethrows its
  /// error. Dropping it drops the value (for a read, the bytes it consumed).
  std::tuple<task<Ts>...> also_finished;
};

/// The result of when_any(std::vector<task<T>>): which task finished first, and its value.
template <class T>
struct when_any_vector_result {
  /// The position in the vector of the task that finished first.
  std::size_t index = 0;
  /// Its value (`std::monostate` for task<void>).
  when_value_t<T> value;
  /// The tasks that had finished too, as in when_any_result::also_finished: the vector given
  /// to when_any, with an empty task at `index` and at every position that was cancelled.
  std::vector<task<T>> also_finished;
};

namespace detail {

class when_core;

/// The coroutine through which a combinator awaits one of its tasks: it starts a lazy task
/// or waits for a started operation, then tells the combinator. The task stays in the
/// combinator (the frame refers to it), so that the combinator can see whether its
/// operation was decided; destroying the frame and the task is how a child is cancelled.
struct when_child {
  struct promise_type : pooled {
    when_core* owner = nullptr;
    std::size_t index = 0;
    bool finished = false;
    std::exception_ptr error;
    promise_type* next = nullptr;  // the combinator's list of started children

    when_child get_return_object() noexcept {
      return {std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    struct final_awaiter {
      bool await_ready() noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> self) noexcept;
      void await_resume() noexcept {}
    };
    final_awaiter final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { error = std::current_exception(); }
  };
  std::coroutine_handle<promise_type> handle;
};

/// Awaits `work` and puts its value back into it as a ready task (which also frees the
/// finished coroutine or the operation); an exception goes to the promise's `error`.
template <class T>
when_child await_child(task<T>& work) {
  if constexpr (std::is_void_v<T>) {
    co_await work;
    work = task<void>::ready();
  } else if constexpr (std::is_reference_v<T>) {
    T value = co_await work;
    work = task<T>::ready(value);
  } else {
    T value = co_await work;
    work = task<T>::ready(std::move(value));
  }
}

/// Empties a task: a pending operation is withdrawn or cancelled, a coroutine destroyed.
template <class T>
void drop(task<T>& t) noexcept {
  t = task<T>();
}

/// Takes the result of a task that is ready (awaiting it would not suspend).
template <class T>
when_value_t<T> take_value(task<T>& ready) {
  if constexpr (std::is_void_v<T>) {
    ready.operator co_await().await_resume();
    return {};
  } else if constexpr (std::is_reference_v<T>) {
    return std::ref(ready.operator co_await().await_resume());
  } else {
    return ready.operator co_await().await_resume();
  }
}

/// Replaces a decided task by a ready task holding its value, and returns nullptr; if it
/// failed, empties it and returns the error. Either way the task's operation is released:
/// its queued resumption, if any, is taken off the ready queue (it would resume a child
/// frame about to be destroyed).
template <class T>
std::exception_ptr settle(task<T>& decided) noexcept {
  try {
    if constexpr (std::is_void_v<T>) {
      decided.operator co_await().await_resume();
      decided = task<void>::ready();
    } else if constexpr (std::is_reference_v<T>) {
      T value = decided.operator co_await().await_resume();
      decided = task<T>::ready(value);
    } else {
      T value = decided.operator co_await().await_resume();
      decided = task<T>::ready(std::move(value));
    }
    return nullptr;
  } catch (...) {
    decided = task<T>();
    return std::current_exception();
  }
}

/// The state when_all and when_any share: the started children and who waits for them.
class when_core {
 public:
  when_core(const when_core&) = delete;
  when_core& operator=(const when_core&) = delete;

  /// Called by a child at its end (its value is back in its task, or its error in its
  /// promise). Returns the awaiting coroutine once the combinator is decided.
  std::coroutine_handle<> child_finished(when_child::promise_type& child) noexcept {
    child.finished = true;
    --running_;
    if (!settled_) {
      if (first_wins_) {
        settled_ = true;
        winner_ = child.index;
        error_ = child.error;
      } else if (child.error) {
        settled_ = true;
        error_ = child.error;
      }
    }
    if (waiting_ && (settled_ || running_ == 0)) return std::exchange(waiting_, nullptr);
    return std::noop_coroutine();
  }

 protected:
  explicit when_core(bool first_wins) noexcept : first_wins_(first_wins) {}
  ~when_core() { destroy_children(); }

  /// Starts a child awaiting `work` and runs it until it suspends or finishes.
  template <class T>
  void start_child(task<T>& work, std::size_t index) {
    auto& child = await_child(work).handle.promise();  // std::bad_alloc: nothing linked yet
    child.owner = this;
    child.index = index;
    child.next = children_;
    children_ = &child;
    ++running_;
    auto handle = std::coroutine_handle<when_child::promise_type>::from_promise(child);
    handle.resume();
    if (child.finished) {  // finished at once: its frame is no longer running, free it now
      children_ = child.next;
      handle.destroy();
    }
  }

  /// After the start: true (suspend) unless the combinator is already decided.
  bool suspend_unless_decided(std::coroutine_handle<> waiting) noexcept {
    if (settled_ || running_ == 0) return false;
    waiting_ = waiting;
    return true;
  }

  /// Destroys the children's frames. Their tasks must have been dealt with first (emptied, or
  /// settled), since a pending operation or coroutine would otherwise resume a freed frame.
  void destroy_children() noexcept {
    while (children_ != nullptr) {
      auto* child = std::exchange(children_, children_->next);
      std::coroutine_handle<when_child::promise_type>::from_promise(*child).destroy();
    }
    running_ = 0;
  }

  bool settled_ = false;      // the result is decided (a failure, or when_any's winner)
  std::size_t winner_ = 0;    // when_any: the first to finish
  std::exception_ptr error_;  // the failure to rethrow

 private:
  const bool first_wins_;
  std::size_t running_ = 0;          // started and not finished
  std::coroutine_handle<> waiting_;  // set while suspended
  when_child::promise_type* children_ = nullptr;
};

inline std::coroutine_handle<> when_child::promise_type::final_awaiter::await_suspend(
    std::coroutine_handle<promise_type> self) noexcept {
  return self.promise().owner->child_finished(self.promise());
}

/// The tasks of when_all(task<Ts>...)/when_any(task<Ts>...), visited by position.
template <class... Ts>
struct tuple_pack {
  std::tuple<task<Ts>...> tasks;

  template <class F>
  void for_each(F&& f) {
    visit_all(f, std::index_sequence_for<Ts...>{});
  }
  /// Empty tasks, one per position: where when_any puts the losers it hands back.
  std::tuple<task<Ts>...> empty_like() const noexcept { return {}; }
  /// Calls f(task, the same position in `other`, position) for each position.
  template <class F>
  void for_each_with(std::tuple<task<Ts>...>& other, F&& f) {
    visit_both(other, f, std::index_sequence_for<Ts...>{});
  }
  std::tuple<when_value_t<Ts>...> collect() { return collect(std::index_sequence_for<Ts...>{}); }
  when_any_result<Ts...> any_result(std::size_t winner, std::tuple<task<Ts>...> finished) {
    using value_type = std::variant<when_value_t<Ts>...>;
    value_type value = take_at(winner, std::index_sequence_for<Ts...>{});
    return when_any_result<Ts...>{winner, std::move(value), std::move(finished)};
  }

 private:
  template <class F, std::size_t... I>
  void visit_all(F& f, std::index_sequence<I...>) {
    (f(std::get<I>(tasks), I), ...);
  }
  template <class F, std::size_t... I>
  void visit_both(std::tuple<task<Ts>...>& other, F& f, std::index_sequence<I...>) {
    (f(std::get<I>(tasks), std::get<I>(other), I), ...);
  }
  template <std::size_t... I>
  std::tuple<when_value_t<Ts>...> collect(std::index_sequence<I...>) {
    return std::tuple<when_value_t<Ts>...>(take_value(std::get<I>(tasks))...);
  }
  template <std::size_t I>
  std::variant<when_value_t<Ts>...> take_one() {
    std::variant<when_value_t<Ts>...> value(std::in_place_index<I>, take_value(std::get<I>(tasks)));
    drop(std::get<I>(tasks));
    return value;
  }
  template <std::size_t... I>
  std::variant<when_value_t<Ts>...> take_at(std::size_t index, std::index_sequence<I...>) {
    using take_fn = std::variant<when_value_t<Ts>...> (tuple_pack::*)();
    static constexpr take_fn takers[] = {&tuple_pack::take_one<I>...};
    return (this->*takers[index])();
  }
};

/// The tasks of when_all(std::vector<task<T>>)/when_any(std::vector<task<T>>).
template <class T>
struct vector_pack {
  std::vector<task<T>> tasks;

  template <class F>
  void for_each(F&& f) {
    for (std::size_t i = 0; i < tasks.size(); ++i) f(tasks[i], i);
  }
  /// Empty tasks, one per position (throws std::bad_alloc).
  std::vector<task<T>> empty_like() const { return std::vector<task<T>>(tasks.size()); }
  /// Calls f(task, the same position in `other`, position) for each position.
  template <class F>
  void for_each_with(std::vector<task<T>>& other, F&& f) {
    for (std::size_t i = 0; i < tasks.size(); ++i) f(tasks[i], other[i], i);
  }
  auto collect() {
    if constexpr (std::is_void_v<T>) {
      for (auto& t : tasks) take_value(t);
    } else {
      std::vector<when_value_t<T>> values;
      values.reserve(tasks.size());
      for (auto& t : tasks) values.push_back(take_value(t));
      return values;
    }
  }
  when_any_vector_result<T> any_result(std::size_t winner, std::vector<task<T>> finished) {
    when_value_t<T> value = take_value(tasks[winner]);
    drop(tasks[winner]);
    return when_any_vector_result<T>{winner, std::move(value), std::move(finished)};
  }
};

/// when_all's awaiter: runs every task not decided yet in a child and waits for all, or for
/// the first failure, which cancels the rest.
template <class Pack>
class all_awaiter final : public when_core {
 public:
  explicit all_awaiter(Pack pack) noexcept : when_core(false), pack_(std::move(pack)) {}
  all_awaiter(const all_awaiter&) = delete;
  ~all_awaiter() { cancel(); }

  /// Settles the tasks decided already; ready if that decides it (all done, or one failed),
  /// so that nothing is started and nothing suspends.
  bool await_ready() noexcept {
    bool all_done = true;
    pack_.for_each([&](auto& t, std::size_t) {
      if (settled_) return;
      if (!t.is_ready()) {
        all_done = false;
      } else if (auto error = settle(t)) {
        settled_ = true;
        error_ = std::move(error);
      }
    });
    return settled_ || all_done;
  }

  bool await_suspend(std::coroutine_handle<> waiting) {
    pack_.for_each([&](auto& t, std::size_t index) {
      if (settled_) return;
      if (!t.is_ready()) {
        start_child(t, index);
      } else if (auto error = settle(t)) {  // decided meanwhile (or settled already)
        settled_ = true;
        error_ = std::move(error);
      }
    });
    return suspend_unless_decided(waiting);
  }

  auto await_resume() {
    if (error_) {
      cancel();
      std::rethrow_exception(error_);
    }
    return pack_.collect();
  }

 private:
  /// Destroys every task (withdrawing pending reads, S13), then the children's frames.
  void cancel() noexcept {
    pack_.for_each([](auto& t, std::size_t) { drop(t); });
    destroy_children();
  }

  Pack pack_;
};

/// when_any's awaiter: the first task to finish (or the first decided already, by position)
/// wins; the others are cancelled or, if they had finished too, handed back.
template <class Pack>
class any_awaiter final : public when_core {
 public:
  explicit any_awaiter(Pack pack) noexcept : when_core(true), pack_(std::move(pack)) {}
  any_awaiter(const any_awaiter&) = delete;
  ~any_awaiter() { cancel(); }

  /// A task decided already wins at once (the first by position): nothing is started.
  bool await_ready() noexcept {
    pack_.for_each([&](auto& t, std::size_t index) {
      if (!settled_ && t.is_ready()) {
        settled_ = true;
        winner_ = index;
      }
    });
    return settled_;
  }

  bool await_suspend(std::coroutine_handle<> waiting) {
    // A child that finishes while starting wins: the later tasks are not started at all.
    pack_.for_each([&](auto& t, std::size_t index) {
      if (!settled_) start_child(t, index);
    });
    return suspend_unless_decided(waiting);
  }

  auto await_resume() {
    if (error_) {  // the winner failed
      cancel();
      std::rethrow_exception(error_);
    }
    // Why a loser's operation is asked whether it was decided: it may have completed in the
    // same loop turn as the winner's, its resumption queued behind the winner's (or before
    // the call, S7). A read decided so has consumed its bytes (S12): it can no longer be
    // withdrawn, and destroying its task would drop them (S13). So it is handed back instead.
    // Why every such loser is taken out before anything is cancelled: destroying a coroutine
    // may decide other operations (a stream it owned closes, failing a read pending on it).
    // Those did not finish on their own, so they are cancelled with the rest: left in place
    // they would look decided, and a started child's resumption, queued by the close, would
    // outlive the child frame destroyed below.
    auto finished = pack_.empty_like();  // the vector form allocates: before any change
    pack_.for_each_with(finished, [&](auto& t, auto& kept, std::size_t index) {
      if (index == winner_ || !t.is_ready()) return;
      if (auto error = settle(t)) {  // also takes a queued resumption off the ready queue
        kept = make_failed_task<typename std::remove_reference_t<decltype(t)>::value_type>(
            std::move(error));
      } else {
        kept = std::move(t);
      }
    });
    // Cancel every other task, started or not: a pending read is withdrawn, a coroutine
    // destroyed at its suspension point (S63).
    pack_.for_each([&](auto& t, std::size_t index) {
      if (index != winner_) drop(t);
    });
    destroy_children();
    return pack_.any_result(winner_, std::move(finished));
  }

 private:
  /// Destroys every task (withdrawing pending reads, S13), then the children's frames.
  void cancel() noexcept {
    pack_.for_each([](auto& t, std::size_t) { drop(t); });
    destroy_children();
  }

  Pack pack_;
};

/// The result of a combinator decided without suspending, as a task decided at the call.
template <class Awaiter>
auto decided_task(Awaiter& awaiter) -> task<decltype(awaiter.await_resume())> {
  using result = decltype(awaiter.await_resume());
  try {
    if constexpr (std::is_void_v<result>) {
      awaiter.await_resume();
      return task<void>::ready();
    } else {
      return task<result>::ready(awaiter.await_resume());
    }
  } catch (...) {
    return make_failed_task<result>(std::current_exception());
  }
}

template <class Pack>
using all_result_t = decltype(std::declval<Pack&>().collect());
template <class Pack>
using any_result_t =
    decltype(std::declval<Pack&>().any_result(0, std::declval<Pack&>().empty_like()));

/// The coroutines of the combinators whose tasks are not all decided at the call.
template <class Pack>
task<all_result_t<Pack>> run_all(Pack pack) {
  all_awaiter<Pack> awaiter(std::move(pack));
  co_return co_await awaiter;
}
template <class Pack>
task<void> run_all_void(Pack pack) {
  all_awaiter<Pack> awaiter(std::move(pack));
  co_await awaiter;
}
template <class Pack>
task<any_result_t<Pack>> run_any(Pack pack) {
  any_awaiter<Pack> awaiter(std::move(pack));
  co_return co_await awaiter;
}

/// Throws std::invalid_argument if a task is empty (moved from, or default-constructed).
template <class T>
void require_work(const char* combinator, const task<T>& t, std::size_t index) {
  if (!t) {
    throw std::invalid_argument(std::string(combinator) + ": task " + std::to_string(index) +
                                " is empty (moved from or default-constructed)");
  }
}

}  // namespace detail

/// Awaits all of `tasks` concurrently, on the current event loop; completes with their
/// values in argument order (`std::monostate` for a task<void>, see when_value_t).
///
/// Each task not decided yet is awaited by a child coroutine (one pooled frame each, plus
/// one for when_all): a lazy task starts when the when_all task is awaited, in argument
/// order, each running until its first suspension; a stream operation has started at its
/// call already (S4). When one fails,
/// the others are cancelled at once, as with_timeout cancels (S63): each is destroyed at its
/// current suspension point, which withdraws a pending stream read with no byte lost (S13)
/// and leaves a write's bytes going out (S28). Then its exception is rethrown: the first to
/// fail in time, or among tasks that had failed before the await, the first by position.
/// The values of the tasks that had completed are dropped; so is the result of a task whose
/// operation was decided but not yet resumed (a read's bytes then are gone, S13).
///
/// Destroying the when_all task (or a timeout on it) cancels every task in the same way.
/// If every task is decided at the call (is_ready(): a read served from the buffer, S7),
/// so is the result: nothing is allocated for children and awaiting does not suspend. With
/// no tasks the result is an empty tuple, at once.
///
/// Throws std::invalid_argument at the call if a task is empty. Pass tasks as rvalues
/// (`std::move(t)`); a task given to when_all is owned by it.
template <class... Ts>
task<std::tuple<when_value_t<Ts>...>> when_all(task<Ts>... tasks) {
  std::size_t index = 0;
  (detail::require_work("when_all", tasks, index++), ...);
  const bool all_decided = (tasks.is_ready() && ...);
  detail::tuple_pack<Ts...> pack{std::tuple<task<Ts>...>(std::move(tasks)...)};
  if (all_decided) {
    detail::all_awaiter<detail::tuple_pack<Ts...>> awaiter(std::move(pack));
    awaiter.await_ready();
    return detail::decided_task(awaiter);
  }
  return detail::run_all(std::move(pack));
}

/// Awaits all of `tasks` concurrently; completes with their values in the vector's order
/// (`std::vector<std::reference_wrapper<U>>` for task<U&>; task<void> for
/// `std::vector<task<void>>`, which has no values). Otherwise as the variadic when_all:
/// the first failure cancels the rest and is rethrown; decided at the call if every task is.
/// An empty vector gives an empty result at once.
template <class T>
auto when_all(std::vector<task<T>> tasks) -> task<detail::all_result_t<detail::vector_pack<T>>> {
  bool all_decided = true;
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    detail::require_work("when_all", tasks[i], i);
    all_decided = all_decided && tasks[i].is_ready();
  }
  detail::vector_pack<T> pack{std::move(tasks)};
  if (all_decided) {
    detail::all_awaiter<detail::vector_pack<T>> awaiter(std::move(pack));
    awaiter.await_ready();
    return detail::decided_task(awaiter);
  }
  if constexpr (std::is_void_v<T>) {
    return detail::run_all_void(std::move(pack));
  } else {
    return detail::run_all(std::move(pack));
  }
}

/// Awaits the first of `tasks` to finish, on the current event loop; completes with its
/// position and value (when_any_result), after cancelling the others.
///
/// Each task not decided yet runs in a child coroutine. The first to finish wins (the first
/// child resumed: completions run in the order the loop delivers them). The others are
/// cancelled as with_timeout cancels (S63): a pending stream read is withdrawn with no byte
/// lost (S13), a coroutine is destroyed at its suspension point. If the winner failed, its
/// exception is rethrown after that cancellation.
///
/// A task whose operation had been decided when the winner resumed (completed in the same
/// loop turn, its resumption still queued) cannot be withdrawn: a read has consumed its bytes.
/// It is not dropped but handed back in when_any_result::also_finished, where awaiting it
/// gives its value (or rethrows its error) without suspending. when_any can see this only
/// for the operation a task itself is: a task returned by a stream method (a read, write,
/// wait_for_handshake) or by corio::start. A lazy coroutine is destroyed at its suspension
/// point whatever it waited for, so an operation it awaited that had completed but not yet
/// resumed it is lost with it, as under with_timeout (S13). To race reads without losing
/// bytes, pass the read tasks themselves, not coroutines wrapping them. Only what was
/// decided when the winner resumed is handed back: a task that cancelling another decides
/// (a coroutine whose destruction closes the stream a read waits on) is cancelled too. If
/// the winner failed, also_finished is dropped with the rest.
///
/// If a task is decided at the call, the first such task by position wins at once: the
/// result is decided at the call too (awaiting does not suspend, nothing is started), tasks
/// not decided are cancelled at the call, and the other decided ones are handed back.
/// Destroying the when_any task cancels every task. Throws std::invalid_argument at the call
/// if a task is empty.
template <class... Ts>
task<when_any_result<Ts...>> when_any(task<Ts>... tasks) {
  static_assert(sizeof...(Ts) > 0, "when_any needs at least one task");
  std::size_t index = 0;
  (detail::require_work("when_any", tasks, index++), ...);
  const bool any_decided = (tasks.is_ready() || ...);
  detail::tuple_pack<Ts...> pack{std::tuple<task<Ts>...>(std::move(tasks)...)};
  if (any_decided) {
    detail::any_awaiter<detail::tuple_pack<Ts...>> awaiter(std::move(pack));
    awaiter.await_ready();
    return detail::decided_task(awaiter);
  }
  return detail::run_any(std::move(pack));
}

/// Awaits the first of `tasks` to finish; completes with its position in the vector and its
/// value (when_any_vector_result), after cancelling the others. Otherwise as the variadic
/// when_any, including the tasks handed back in also_finished. Throws std::invalid_argument
/// at the call if the vector is empty (there would be no first to finish) or holds an empty
/// task.
template <class T>
task<when_any_vector_result<T>> when_any(std::vector<task<T>> tasks) {
  if (tasks.empty()) throw std::invalid_argument("when_any: no tasks (an empty vector)");
  bool any_decided = false;
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    detail::require_work("when_any", tasks[i], i);
    any_decided = any_decided || tasks[i].is_ready();
  }
  detail::vector_pack<T> pack{std::move(tasks)};
  if (any_decided) {
    detail::any_awaiter<detail::vector_pack<T>> awaiter(std::move(pack));
    awaiter.await_ready();
    return detail::decided_task(awaiter);
  }
  return detail::run_any(std::move(pack));
}

}  // namespace corio
