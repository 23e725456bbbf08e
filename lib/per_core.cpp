// Thread-per-core: one loop per thread, each pinned to a CPU, joined at the end.
#include "corio/per_core.hpp"

#include <pthread.h>
#include <sched.h>

#include <barrier>
#include <exception>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace corio {

void run_per_core(unsigned threads, std::function<task<void>(core_context&)> body,
                  loop_options options) {
  // Thread i goes to the i-th CPU this process may run on (taskset/cgroup cpusets respected),
  // not to CPU i of the machine.
  std::vector<int> allowed;
  cpu_set_t inherited;
  CPU_ZERO(&inherited);
  if (sched_getaffinity(0, sizeof inherited, &inherited) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (CPU_ISSET(cpu, &inherited)) allowed.push_back(cpu);
    }
  }
  if (threads == 0) {
    threads = allowed.empty() ? std::max(1u, std::thread::hardware_concurrency())
                              : static_cast<unsigned>(allowed.size());
  }
  std::vector<event_loop*> loops(threads, nullptr);
  std::barrier ready(static_cast<std::ptrdiff_t>(threads));
  std::mutex failure_mutex;
  std::exception_ptr failure;
  std::atomic<bool> stop_requested{false};
  auto record = [&](std::exception_ptr e) {
    std::lock_guard lock(failure_mutex);
    if (!failure) failure = e;
  };
  // A body that fails stops the others (as stop_all() would), so that its error surfaces
  // instead of the process serving on without it. Only between the two barriers, where
  // every loop exists.
  auto fail_and_stop_all = [&](std::exception_ptr e) {
    record(std::move(e));
    stop_requested.store(true);
    for (event_loop* loop : loops) loop->post([loop] { loop->stop(); });
  };
  std::vector<std::thread> workers;
  workers.reserve(threads);
  auto work = [&](unsigned i) {
    if (!allowed.empty()) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(allowed[i % allowed.size()], &set);
      pthread_setaffinity_np(pthread_self(), sizeof set, &set);  // best effort
    }
    std::unique_ptr<event_loop> loop;
    try {
      loop = std::make_unique<event_loop>(options);
    } catch (...) {
      record(std::current_exception());
    }
    loops[i] = loop.get();
    // Every loop exists before any body runs, so post_to() always has a target.
    ready.arrive_and_wait();
    if (!loop) return;
    for (event_loop* other : loops) {
      if (other == nullptr) return;  // a sibling failed to start
    }
    core_context context(i, loops, &stop_requested);
    try {
      loop->run(body(context));
    } catch (const stopped_error&) {
      // A body cut short by stop_all() (or by a sibling's failure) is the normal way to end.
      if (!stop_requested.load()) record(std::current_exception());
    } catch (...) {
      fail_and_stop_all(std::current_exception());
    }
    // Keep this loop alive (others may still post to it) until every body is done.
    ready.arrive_and_wait();
  };
  for (unsigned i = 0; i < threads; ++i) {
    try {
      try {
        workers.emplace_back(work, i);
      } catch (const std::system_error& e) {
        throw error("run_per_core: cannot start thread " + std::to_string(i) + " of " +
                        std::to_string(threads) + ": " + e.code().message(),
                    e.code());
      }
    } catch (...) {
      // No thread for i (EAGAIN: RLIMIT_NPROC, threads-max, memory). The started ones wait
      // at the first barrier for `threads` arrivals: arrive in place of each missing thread,
      // and they see its loop missing and return, as when a loop fails to start. Without
      // this the exception left joinable threads behind: std::terminate.
      record(std::current_exception());
      for (unsigned missing = i; missing < threads; ++missing) ready.arrive_and_drop();
      break;
    }
  }
  for (std::thread& t : workers) t.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace corio
