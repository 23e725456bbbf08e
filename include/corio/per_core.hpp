// corio/per_core.hpp - thread-per-core: one event loop per thread, nothing shared.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <vector>

#include "corio/loop.hpp"
#include "corio/task.hpp"

namespace corio {

/// What each thread of run_per_core gets: its index, the number of threads, and a way to
/// post work to another thread's loop (the only cross-thread path; S60).
class core_context {
 public:
  /// This thread's index, 0 … count()-1.
  unsigned index() const noexcept { return index_; }
  /// Number of threads (loops).
  unsigned count() const noexcept { return static_cast<unsigned>(loops_.size()); }
  /// Runs `fn` on loop `target`'s thread (thread-safe).
  void post_to(unsigned target, std::function<void()> fn) const {
    loops_.at(target)->post(std::move(fn));
  }
  /// Asks every loop to stop after its current iteration.
  void stop_all() const {
    stop_requested_->store(true);
    for (event_loop* loop : loops_) loop->post([loop] { loop->stop(); });
  }

  /// @cond INTERNAL
  core_context(unsigned index, const std::vector<event_loop*>& loops,
               std::atomic<bool>* stop_requested)
      : index_(index), loops_(loops), stop_requested_(stop_requested) {}
  /// @endcond
 private:
  unsigned index_;
  const std::vector<event_loop*>& loops_;
  std::atomic<bool>* stop_requested_;
};

/// Runs `body` on `threads` threads (0: one per CPU the process may run on), each with its own
/// event_loop created from `options` and pinned to one CPU (thread i to the i-th CPU the process
/// may run on, so `taskset` and cpusets are respected); returns when every body has finished or
/// stop_all() was called. Each thread typically binds its own tcp_listener on the same port
/// with listen_options::reuse_port, so the kernel spreads connections and nothing is shared
/// on the hot path (the Seastar/monoio model). A body that throws stops every loop (as
/// stop_all() does), and the first exception a body threw is rethrown here after all threads
/// have ended. If a loop cannot be created, or a thread cannot be started (corio::error
/// "run_per_core: cannot start thread i of n", the errno as code()), no body runs: the threads
/// already started end and the error is thrown.
void run_per_core(unsigned threads, std::function<task<void>(core_context&)> body,
                  loop_options options = {});

}  // namespace corio
