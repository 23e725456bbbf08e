// run_per_core: one loop per thread, cross-loop post, SO_REUSEPORT listeners.
#include "corio/per_core.hpp"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "corio/corio.hpp"
#include "support/backends.hpp"

using namespace corio;
using namespace std::chrono_literals;

namespace {
class PerCore : public corio::testing::backend_test {};

TEST_P(PerCore, EachThreadHasItsOwnLoopAndPostsReachOtherLoops) {
  std::atomic<int> received{0};
  std::mutex m;
  std::set<const event_loop*> seen;
  run_per_core(
      2,
      [&](core_context& ctx) -> task<void> {
        {
          std::lock_guard lock(m);
          seen.insert(&event_loop::current());
        }
        unsigned other = (ctx.index() + 1) % ctx.count();
        for (int i = 0; i < 1000; ++i) ctx.post_to(other, [&] { ++received; });
        while (received.load() < 2000) co_await sleep_for(1ms);
      },
      options());
  EXPECT_EQ(received.load(), 2000);
  EXPECT_EQ(seen.size(), 2u);
}

TEST_P(PerCore, ReusePortListenersServeConnectionsAndStopAllEnds) {
  // Each loop binds the same port with SO_REUSEPORT and serves one line-echo; a client on
  // the main thread connects several times; then stop_all ends every loop.
  std::atomic<std::uint16_t> port{0};
  std::atomic<int> served{0};
  std::thread client;
  run_per_core(
      2,
      [&](core_context& ctx) -> task<void> {
        listen_options lo;
        lo.reuse_port = true;
        std::uint16_t want = 0;
        if (ctx.index() != 0) {
          while ((want = port.load()) == 0) co_await sleep_for(1ms);
        }
        auto listener = tcp_listener::bind("127.0.0.1", want, lo);
        if (ctx.index() == 0) {
          port = listener.port();
          client = std::thread([&, p = listener.port()] {
            event_loop loop(options());
            loop.run([&]() -> task<void> {
              for (int i = 0; i < 8; ++i) {
                auto s = co_await tcp_stream::connect("127.0.0.1", p);
                s.write("hi\n");
                EXPECT_EQ(co_await s.read_until("\n"), "hi\n");
              }
            }());
            ctx.stop_all();
          });
        }
        for (;;) {
          auto s = co_await listener.accept();
          s.write(co_await s.read_until("\n"));
          co_await s.write("");
          ++served;
        }
      },
      options());
  client.join();
  EXPECT_EQ(served.load(), 8);
}

// Threads are pinned within the CPUs the process may use (taskset, cpusets), in order; with
// threads = 0 there is one per such CPU.
TEST_P(PerCore, PinsWithinTheInheritedAffinityAndCountsItsCpus) {
  cpu_set_t original;
  ASSERT_EQ(sched_getaffinity(0, sizeof original, &original), 0);
  int last = -1;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &original)) last = cpu;
  }
  ASSERT_GE(last, 0);
  cpu_set_t only_last;
  CPU_ZERO(&only_last);
  CPU_SET(last, &only_last);
  ASSERT_EQ(sched_setaffinity(0, sizeof only_last, &only_last), 0);
  std::mutex m;
  std::vector<int> pinned_to;
  unsigned count = 0;
  run_per_core(
      0,
      [&](core_context& ctx) -> task<void> {
        cpu_set_t mine;
        sched_getaffinity(0, sizeof mine, &mine);
        std::lock_guard lock(m);
        count = ctx.count();
        for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
          if (CPU_ISSET(cpu, &mine)) pinned_to.push_back(cpu);
        }
        co_return;
      },
      options());
  sched_setaffinity(0, sizeof original, &original);
  EXPECT_EQ(count, 1u) << "threads = 0 makes one loop per CPU the process may run on";
  EXPECT_EQ(pinned_to, std::vector<int>{last}) << "pinned outside the inherited affinity";
}

TEST_P(PerCore, ABodyThatThrowsStopsTheOthersAndItsErrorIsRethrown) {
  // Thread 1 fails at once (say, its bind failed); thread 0 would serve forever. The failure
  // stops every loop and surfaces, instead of the process serving on without thread 1.
  std::atomic<bool> other_cut_short{true};
  auto started = std::chrono::steady_clock::now();
  try {
    run_per_core(
        2,
        [&](core_context& ctx) -> task<void> {
          if (ctx.index() == 1) throw std::runtime_error("thread 1 could not bind");
          for (int i = 0; i < 30'000; ++i) co_await sleep_for(1ms);
          other_cut_short = false;
        },
        options());
    ADD_FAILURE() << "run_per_core returned normally";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "thread 1 could not bind");
  }
  EXPECT_TRUE(other_cut_short.load());
  EXPECT_LT(std::chrono::steady_clock::now() - started, 10s);
}

TEST_P(PerCore, AThreadThatCannotStartIsAnErrorNotATermination) {
  // In a child process limited to a few processes (RLIMIT_NPROC; root is exempt, so the child
  // becomes `nobody` first), run_per_core(64) cannot start all its threads. It must throw a
  // corio::error that says so, after ending the threads it did start; it used to leave them
  // joinable and die in std::terminate (SIGABRT).
  const loop_options o = options();
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::getuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(10);
    const rlimit few{4, 4};
    if (::setrlimit(RLIMIT_NPROC, &few) != 0) ::_exit(11);
    int outcome = 12;  // returned normally: every thread started, the limit did not bite
    try {
      run_per_core(
          64, [](core_context&) -> task<void> { co_return; }, o);
    } catch (const corio::error& e) {
      const std::string what = e.what();
      const bool named = what.find("run_per_core: cannot start thread") != std::string::npos &&
                         what.find(" of 64") != std::string::npos;
      outcome = named && e.code() == std::errc::resource_unavailable_try_again ? 0 : 13;
    } catch (...) {
      outcome = 14;
    }
    ::_exit(outcome);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died of signal "
                                 << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "10/11: could not drop privileges or set the limit, 12: no error, 13: wrong error, "
         "14: not a corio::error";
}

CORIO_INSTANTIATE_BACKENDS(PerCore);
}  // namespace
