// Thread-per-core: one loop per thread, each pinned to a CPU, joined at the end.
#include "corio/per_core.hpp"

#include <pthread.h>
#include <sched.h>

#include <barrier>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace corio {

void run_per_core(unsigned threads, std::function<task<void>(core_context&)> body,
                  loop_options options) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<event_loop*> loops(threads, nullptr);
  std::barrier ready(static_cast<std::ptrdiff_t>(threads));
  std::mutex failure_mutex;
  std::exception_ptr failure;
  std::atomic<bool> stop_requested{false};
  auto record = [&](std::exception_ptr e) {
    std::lock_guard lock(failure_mutex);
    if (!failure) failure = e;
  };
  std::vector<std::thread> workers;
  for (unsigned i = 0; i < threads; ++i) {
    workers.emplace_back([&, i] {
      unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(i % cpus, &set);
      pthread_setaffinity_np(pthread_self(), sizeof set, &set);  // best effort
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
      } catch (...) {
        // A body cut short by stop_all() is the normal way to end, not a failure.
        if (!stop_requested.load()) record(std::current_exception());
      }
      // Keep this loop alive (others may still post to it) until every body is done.
      ready.arrive_and_wait();
    });
  }
  for (std::thread& t : workers) t.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace corio
