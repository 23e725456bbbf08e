// corio/signal.hpp - POSIX signals awaited through the loop (Asio's signal_set).
#pragma once

#include <initializer_list>
#include <memory>

#include "corio/task.hpp"

namespace corio {

/// A set of POSIX signal numbers whose deliveries are awaited with wait(), like Asio's
/// `signal_set`: `corio::signal_set stop{SIGINT, SIGTERM}; co_await stop.wait();`.
///
/// While at least one set handles a signal, corio's own `sigaction` handler (SA_RESTART) is
/// installed for it, process-wide; the disposition it replaced (default, ignored, or another
/// handler) comes back when the last set handling that signal removes it or is destroyed,
/// unless something else installed a disposition for that signal in between: that later one
/// is left in place.
/// The handler only does async-signal-safe work: it marks the signal pending in every set
/// that handles it and writes to each such set's eventfd, which wait() polls through the loop.
/// No signal is blocked (no sigprocmask), so it does not matter which thread the kernel picks,
/// and child processes inherit no blocked mask.
///
/// Several sets, in one thread or in several threads with their own loops, may handle the
/// same signal: each receives every delivery. A delivery that arrives while nobody waits is
/// kept in the set and returned by the next wait(). Deliveries of one signal number that
/// arrive before a wait() takes them are merged into one (as the kernel merges a standard
/// signal that is already pending); different pending signals are returned one per wait(),
/// lowest number first.
///
/// Refused with std::invalid_argument: numbers outside 1..SIGRTMAX, the two real-time signals
/// glibc keeps for its threads (32 and 33), SIGKILL and SIGSTOP (they cannot be caught), and
/// the synchronous faults SIGSEGV, SIGBUS, SIGFPE and SIGILL (a handler that returns resumes
/// the faulting instruction, which faults again: they cannot be handled by waiting).
///
/// SIGPIPE may be added, but a SIGPIPE that corio's own pipe writes raise in a loop's thread
/// never arrives: each loop blocks SIGPIPE in its thread (see docs/subprocess.md).
///
/// A set is not thread-safe: add, remove, wait and destroy it on one thread, with one loop at a
/// time (it may outlive a loop and serve the next loop of that thread).
///
/// Across fork() a set works in both processes: in the child it has an eventfd of its own
/// (under the same fd number) and no kept delivery (a child has no pending signals).
/// Guide: docs/signals.md.
class signal_set {
 public:
  /// A set that handles no signal yet; add() some. Throws corio::error if its eventfd cannot
  /// be made (EMFILE…).
  signal_set();
  /// A set handling `signals` (each as add()). Throws std::invalid_argument naming the first
  /// refused signal; the signals already added are then removed again.
  signal_set(std::initializer_list<int> signals);
  /// Takes over `other`'s signals and pending deliveries; `other` becomes empty and unusable
  /// (every member but destruction and assignment throws std::logic_error).
  signal_set(signal_set&& other) noexcept;
  /// Removes this set's signals (as the destructor), then takes over `other`'s.
  signal_set& operator=(signal_set&& other) noexcept;
  signal_set(const signal_set&) = delete;
  signal_set& operator=(const signal_set&) = delete;
  /// Removes every signal of the set (restoring a signal's previous disposition if no other
  /// set handles it) and drops the deliveries it kept. A wait() still pending fails with
  /// corio::error (code() is ECANCELED) in its loop's next turn.
  ~signal_set();

  /// Handles `signal` from now on; nothing if the set already has it. Throws
  /// std::invalid_argument for a refused signal (see the class comment), corio::error if
  /// sigaction fails.
  void add(int signal);
  /// Stops handling `signal` and drops a delivery of it that the set kept; nothing if the set
  /// does not have it. Throws std::invalid_argument for a number that could never be added.
  void remove(int signal);

  /// Completes with the number of the next signal delivered to this set, or at once with one
  /// the set kept (lowest number first). Must be awaited on a thread running an event_loop.
  /// One wait() at a time: a second one while the first is pending throws std::logic_error.
  /// Cancelling it (with_timeout, dropping the task) loses no delivery: one that arrives later
  /// is kept for the next wait() ("total" cancellation in Asio's terms). Throws corio::error
  /// (code() ECANCELED) if the set is destroyed while the wait is pending.
  [[nodiscard]] task<int> wait();

  /// @cond INTERNAL
  struct state;
  /// @endcond
 private:
  // Shared with a pending wait(), so that destroying the set while one is pending leaves it
  // nothing dangling (the eventfd it polls stays open until it is done).
  std::shared_ptr<state> state_;
};

}  // namespace corio
