// signal_set: signals awaited through the loop, on both backends. Each test signals only its
// own process (kill(getpid()) or raise), with SIGUSR1, SIGUSR2 and SIGWINCH only: ctest runs
// test processes in parallel, and SIGINT/SIGTERM belong to whoever runs the suite. After every
// test the dispositions of those signals are what they were before, and no fd is left open.
#include <errno.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "corio/corio.hpp"
#include "support/backends.hpp"

using namespace corio;
using namespace std::chrono_literals;
using corio::testing::open_fd_count;
using ::testing::HasSubstr;

namespace {

using handler_type = void (*)(int);

handler_type disposition_of(int signal) {
  struct sigaction current {};
  ::sigaction(signal, nullptr, &current);
  return current.sa_handler;
}

std::atomic<int> own_handler_calls{0};
void own_handler(int) { own_handler_calls.fetch_add(1); }

/// Installs `handler` for `signal` for the scope, then puts back what was there.
class scoped_disposition {
 public:
  scoped_disposition(int signal, handler_type handler) : signal_(signal) {
    struct sigaction action {};
    action.sa_handler = handler;
    sigemptyset(&action.sa_mask);
    ::sigaction(signal_, &action, &previous_);
  }
  scoped_disposition(const scoped_disposition&) = delete;
  scoped_disposition& operator=(const scoped_disposition&) = delete;
  ~scoped_disposition() { ::sigaction(signal_, &previous_, nullptr); }

 private:
  int signal_;
  struct sigaction previous_ {};
};

/// Completes with the next signal of `set`, or 0 if none comes within `limit`.
task<int> next_signal(signal_set& set, std::chrono::milliseconds limit) {
  try {
    co_return co_await with_timeout(limit, set.wait());
  } catch (const timeout_error&) {
    co_return 0;
  }
}

class SignalSet : public corio::testing::backend_test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 3; ++i) dispositions_before_[i] = disposition_of(signals_[i]);
    fds_before_ = open_fd_count();
    own_handler_calls = 0;
  }
  void TearDown() override {
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(disposition_of(signals_[i]), dispositions_before_[i])
          << "signal " << signals_[i] << "'s disposition was not restored";
    }
    EXPECT_EQ(open_fd_count(), fds_before_) << "fd leak";
  }

 private:
  const int signals_[3] = {SIGUSR1, SIGUSR2, SIGWINCH};
  handler_type dispositions_before_[3] = {};
  int fds_before_ = 0;
};

// ---------------------------------------------------------------- delivery

TEST_P(SignalSet, Wait_CompletesWithTheNumberOfASignalSentLater) {
  run([]() -> task<void> {
    signal_set set{SIGUSR1};
    event_loop::current().call_later(10ms, [] { ::kill(::getpid(), SIGUSR1); });
    EXPECT_EQ(co_await set.wait(), SIGUSR1);
    event_loop::current().call_later(10ms, [] { ::raise(SIGUSR1); });
    EXPECT_EQ(co_await set.wait(), SIGUSR1);
  }());
}

TEST_P(SignalSet, Wait_ReturnsASignalDeliveredBeforeItWasCalled) {
  run([]() -> task<void> {
    signal_set set{SIGUSR1};
    ::raise(SIGUSR1);
    EXPECT_EQ(co_await set.wait(), SIGUSR1);
    EXPECT_EQ(co_await next_signal(set, 20ms), 0) << "one delivery, one wait()";
  }());
}

TEST_P(SignalSet, Wait_TwoDifferentSignalsAreBothReportedLowestFirst) {
  run([]() -> task<void> {
    signal_set set{SIGUSR2, SIGUSR1};
    ::raise(SIGUSR2);
    ::raise(SIGUSR1);
    EXPECT_EQ(co_await set.wait(), SIGUSR1);
    EXPECT_EQ(co_await set.wait(), SIGUSR2);
    EXPECT_EQ(co_await next_signal(set, 20ms), 0);
  }());
}

TEST_P(SignalSet, Wait_DeliveriesOfOneSignalNobodyWaitedForAreMergedIntoOne) {
  run([]() -> task<void> {
    signal_set set{SIGUSR1};
    for (int i = 0; i < 3; ++i) ::raise(SIGUSR1);
    EXPECT_EQ(co_await set.wait(), SIGUSR1);
    EXPECT_EQ(co_await next_signal(set, 20ms), 0);
  }());
}

TEST_P(SignalSet, Wait_TwoSetsForTheSameSignalEachGetIt) {
  run([]() -> task<void> {
    signal_set first{SIGUSR1};
    signal_set second{SIGUSR1, SIGUSR2};
    task<int> first_wait = start(first.wait());  // both pending before the signal comes
    task<int> second_wait = start(second.wait());
    event_loop::current().call_later(5ms, [] { ::kill(::getpid(), SIGUSR1); });
    EXPECT_EQ(co_await std::move(first_wait), SIGUSR1);
    EXPECT_EQ(co_await std::move(second_wait), SIGUSR1);
  }());
}

TEST_P(SignalSet, Wait_CancelledByATimeoutLosesNoLaterDelivery) {
  run([]() -> task<void> {
    signal_set set{SIGUSR1};
    EXPECT_EQ(co_await next_signal(set, 10ms), 0);  // the wait is withdrawn
    ::raise(SIGUSR1);                               // nobody waits now
    EXPECT_EQ(co_await set.wait(), SIGUSR1);
  }());
}

TEST_P(SignalSet, Wait_ASecondConcurrentWaitThrowsLogicError) {
  run([]() -> task<void> {
    signal_set set{SIGUSR1};
    task<int> first = start(set.wait());
    bool threw = false;
    try {
      co_await set.wait();
    } catch (const std::logic_error& e) {
      threw = true;
      EXPECT_THAT(e.what(), HasSubstr("already pending"));
    }
    EXPECT_TRUE(threw);
    ::raise(SIGUSR1);
    EXPECT_EQ(co_await std::move(first), SIGUSR1);  // the first wait is unharmed
  }());
}

TEST_P(SignalSet, Wait_TheLoopWakesForASignalWhileIdle) {
  // Nothing else keeps the loop busy: only the eventfd the handler writes wakes it.
  event_loop loop(options());
  signal_set set{SIGUSR2};
  std::thread sender([] {
    std::this_thread::sleep_for(20ms);
    ::kill(::getpid(), SIGUSR2);
  });
  EXPECT_EQ(loop.run(with_timeout(10s, set.wait())), SIGUSR2);
  sender.join();
}

// ---------------------------------------------------------------- add, remove, dispositions

TEST_P(SignalSet, Remove_StopsDeliveryAndDropsAKeptDelivery) {
  scoped_disposition own(SIGUSR1, own_handler);  // so that a SIGUSR1 after remove() is harmless
  run([]() -> task<void> {
    signal_set set{SIGUSR1, SIGUSR2};
    ::raise(SIGUSR1);  // kept in the set
    set.remove(SIGUSR1);
    set.remove(SIGUSR1);  // not in the set: nothing
    ::raise(SIGUSR1);     // to our own handler now
    EXPECT_EQ(own_handler_calls.load(), 1);
    EXPECT_EQ(co_await next_signal(set, 20ms), 0);
    ::raise(SIGUSR2);
    EXPECT_EQ(co_await set.wait(), SIGUSR2);  // the other signal still comes

    set.add(SIGUSR1);  // and it can come back
    set.add(SIGUSR1);  // already there: nothing
    ::raise(SIGUSR1);
    EXPECT_EQ(co_await set.wait(), SIGUSR1);
    EXPECT_EQ(own_handler_calls.load(), 1);
  }());
}

TEST_P(SignalSet, Destroy_RestoresThePreviousHandlerWhenTheLastSetGoes) {
  scoped_disposition own(SIGUSR1, own_handler);
  run([]() -> task<void> {
    auto first = std::make_unique<signal_set>(std::initializer_list<int>{SIGUSR1});
    auto second = std::make_unique<signal_set>(std::initializer_list<int>{SIGUSR1});
    EXPECT_NE(disposition_of(SIGUSR1), &own_handler);
    first.reset();
    EXPECT_NE(disposition_of(SIGUSR1), &own_handler) << "the second set still handles it";
    ::raise(SIGUSR1);
    EXPECT_EQ(co_await second->wait(), SIGUSR1);
    EXPECT_EQ(own_handler_calls.load(), 0);
    second.reset();
    EXPECT_EQ(disposition_of(SIGUSR1), &own_handler);
    ::raise(SIGUSR1);
    EXPECT_EQ(own_handler_calls.load(), 1) << "the previous handler is called again";
  }());
}

TEST_P(SignalSet, Destroy_KeepsADispositionOtherCodeInstalledWhileTheSetHandledTheSignal) {
  // The library (or the application) installs its own handler after the set was made; the
  // set going away must not put back the disposition from before the set (SIG_DFL here).
  run([]() -> task<void> {
    auto set = std::make_unique<signal_set>(std::initializer_list<int>{SIGUSR2});
    struct sigaction later {};
    later.sa_handler = own_handler;
    sigemptyset(&later.sa_mask);
    struct sigaction replaced {};
    ::sigaction(SIGUSR2, &later, &replaced);
    set.reset();
    EXPECT_EQ(disposition_of(SIGUSR2), &own_handler) << "the later handler was overwritten";
    ::raise(SIGUSR2);
    EXPECT_EQ(own_handler_calls.load(), 1);
    // The other code cleans up after the set went: it puts back what it replaced, corio's
    // handler, which no set uses now. The next set to come and go leaves SIGUSR2 as it was
    // before any set (SIG_DFL), not with corio's handler swallowing it.
    ::sigaction(SIGUSR2, &replaced, nullptr);
    { signal_set again{SIGUSR2}; }
    co_return;
  }());
  EXPECT_EQ(disposition_of(SIGUSR2), SIG_DFL);
}

TEST_P(SignalSet, Destroy_RestoresIgnoredAndDefaultDispositions) {
  scoped_disposition ignored(SIGWINCH, SIG_IGN);
  run([]() -> task<void> {
    {
      signal_set set{SIGWINCH, SIGUSR2};
      EXPECT_NE(disposition_of(SIGWINCH), SIG_IGN);
      ::raise(SIGWINCH);  // ignored before, caught now
      EXPECT_EQ(co_await set.wait(), SIGWINCH);
    }
    EXPECT_EQ(disposition_of(SIGWINCH), SIG_IGN);
    EXPECT_EQ(disposition_of(SIGUSR2), SIG_DFL);
    ::raise(SIGWINCH);  // ignored again
  }());
}

TEST_P(SignalSet, Move_TheNewSetHandlesTheSignalsAndTheOldOneIsUnusable) {
  run([]() -> task<void> {
    signal_set original{SIGUSR1};
    ::raise(SIGUSR1);
    signal_set moved = std::move(original);
    EXPECT_EQ(co_await moved.wait(), SIGUSR1);  // the kept delivery moved too
    EXPECT_THROW(original.add(SIGUSR2), std::logic_error);
    EXPECT_THROW((void)original.wait(), std::logic_error);
    signal_set other{SIGUSR2};
    other = std::move(moved);  // SIGUSR2 removed, SIGUSR1 taken over
    EXPECT_EQ(disposition_of(SIGUSR2), SIG_DFL);
    ::raise(SIGUSR1);
    EXPECT_EQ(co_await other.wait(), SIGUSR1);
  }());
}

// ---------------------------------------------------------------- lifetimes

TEST_P(SignalSet, Destroy_ASetWithAPendingWaitFailsTheWaitWithEcanceled) {
  run([]() -> task<void> {
    auto set = std::make_unique<signal_set>(std::initializer_list<int>{SIGUSR1});
    task<int> waiting = start(set->wait());
    co_await sleep_for(5ms);
    set.reset();
    EXPECT_EQ(disposition_of(SIGUSR1), SIG_DFL);
    try {
      co_await std::move(waiting);
      ADD_FAILURE() << "the wait completed";
    } catch (const corio::error& e) {
      EXPECT_EQ(e.code(), std::errc::operation_canceled);
      EXPECT_THAT(e.what(), HasSubstr("destroyed while waiting"));
    }
  }());
}

TEST_P(SignalSet, Destroy_TheLoopWithAPendingWaitIsClean) {
  auto waiter = [](signal_set& set) -> task<void> {
    co_await set.wait();
    ADD_FAILURE() << "no signal was sent";
  };
  signal_set outlives_the_loop{SIGUSR1};
  {
    event_loop loop(options());
    loop.spawn(waiter(outlives_the_loop));
    loop.run(sleep_for(5ms));
  }  // the waiting task is destroyed with the loop
  // The set is still usable, on another loop.
  ::raise(SIGUSR1);
  {
    event_loop loop(options());
    EXPECT_EQ(loop.run(with_timeout(10s, outlives_the_loop.wait())), SIGUSR1);
  }
  // A set destroyed while its wait is pending, then the loop destroyed before it ran again.
  {
    event_loop loop(options());
    auto set = std::make_unique<signal_set>(std::initializer_list<int>{SIGUSR2});
    loop.spawn(waiter(*set));
    loop.run(sleep_for(5ms));
    set.reset();
  }
}

// ---------------------------------------------------------------- threads

TEST_P(SignalSet, Threads_ASetInAnotherThreadGetsASignalWhileThisOneIsBusy) {
  const corio::backend backend = GetParam();
  std::atomic<bool> other_ready{false};
  std::atomic<int> other_got{0};
  std::thread other([&] {
    loop_options o;
    o.backend = backend;
    event_loop loop(o);
    signal_set set{SIGUSR2};
    other_ready = true;
    other_got = loop.run(next_signal(set, 10000ms));
  });
  int this_got = run([](std::atomic<bool>& other_ready, std::atomic<int>& other_got) -> task<int> {
    signal_set set{SIGUSR2};
    while (!other_ready) co_await sleep_for(1ms);
    ::kill(::getpid(), SIGUSR2);  // most likely handled by this thread, on its way back
    // Busy: this loop does not run until the other thread has the signal.
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (other_got == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    co_return co_await next_signal(set, 10000ms);
  }(other_ready, other_got));
  other.join();
  EXPECT_EQ(other_got.load(), SIGUSR2);
  EXPECT_EQ(this_got, SIGUSR2) << "each set receives the signal";
}

TEST_P(SignalSet, Threads_SetsComingAndGoingWhileSignalsArriveNeverWriteAClosedEventfd) {
  // A sender thread keeps signalling (the kernel runs the handler in either thread) while this
  // thread makes and destroys sets. Once a set is destroyed, no handler may write to its
  // eventfd any more: its number is taken at once by a sentinel eventfd, which must stay
  // unread. A set alive throughout keeps receiving.
  scoped_disposition own(SIGUSR1, own_handler);  // a SIGUSR1 between two sets is harmless
  run([]() -> task<void> {
    signal_set steady{SIGUSR2};
    std::atomic<bool> stop{false};
    std::thread sender([&stop] {
      while (!stop) {
        ::kill(::getpid(), SIGUSR1);
        ::kill(::getpid(), SIGUSR2);
      }
    });
    int stray_writes = 0, sets = 0, steady_received = 0;
    const auto until = std::chrono::steady_clock::now() + 300ms;
    while (std::chrono::steady_clock::now() < until) {
      { signal_set churn{SIGUSR1}; }
      ++sets;
      const int sentinel = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);  // the number just freed
      // A late handler would write now. (Busy: a sleep would be interrupted by every signal.)
      for (auto end = std::chrono::steady_clock::now() + 20us;
           std::chrono::steady_clock::now() < end;) {
      }
      std::uint64_t value = 0;
      if (::read(sentinel, &value, sizeof value) == sizeof value) ++stray_writes;
      ::close(sentinel);
      if (sets % 100 == 0 && co_await next_signal(steady, 5000ms) == SIGUSR2) ++steady_received;
    }
    stop = true;
    sender.join();
    EXPECT_EQ(stray_writes, 0) << "of " << sets << " sets";
    EXPECT_GT(sets, 100);
    EXPECT_EQ(steady_received, sets / 100);
  }());
}

// ---------------------------------------------------------------- refused numbers

// ---------------------------------------------------------------- fork

task<int> readable(int fd) { co_return co_await io::poll(fd, POLLIN); }

// A set made before fork() and awaited in both processes (a pre-fork server: every worker
// awaits the master's SIGTERM set): each process is woken by its own deliveries. The child
// used to share the parent's eventfd, so the parent's wait, woken by the child's signal,
// drained the count the child's wait was about to see, and the child slept on with its
// signal marked (here: lost within a few rounds). A delivery kept before the fork stays the
// parent's, as the kernel's pending signals do.
TEST_P(SignalSet, Fork_ParentAndChildWaitingOnOneSetEachGetTheirOwnSignals) {
  const corio::backend backend = GetParam();
  signal_set set{SIGUSR1};
  ::raise(SIGUSR1);  // kept in the set: the parent's, not the child's
  int to_parent[2];
  ASSERT_EQ(::pipe2(to_parent, O_CLOEXEC), 0);
  constexpr int rounds = 50;
  ::fflush(nullptr);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The child: a loop of its own; after each signal it answers one byte ('k', or 'x' if the
    // signal did not come within a second). It starts with 'r': ready, and nothing kept.
    int status = 0;
    try {
      loop_options o;
      o.backend = backend;
      event_loop loop(o);
      const int kept = loop.run(next_signal(set, 20ms));
      char c = kept == 0 ? 'r' : 'p';
      (void)!::write(to_parent[1], &c, 1);
      for (int i = 0; i < rounds; ++i) {
        const int got = loop.run(next_signal(set, 1000ms));
        c = got == SIGUSR1 ? 'k' : 'x';
        (void)!::write(to_parent[1], &c, 1);
        if (got != SIGUSR1) break;
      }
    } catch (...) {
      status = 2;
    }
    ::_exit(status);
  }
  ::close(to_parent[1]);
  const int from_child = to_parent[0];
  std::string answers;
  int parent_got =
      run([](signal_set& set, pid_t child, int from_child, std::string& answers) -> task<int> {
        // The parent waits on the set all along (as a master would), woken by every write to
        // its eventfd; its first wait takes the delivery kept before the fork.
        int first = co_await next_signal(set, 1000ms);
        bool done = false;
        task<void> waiting = start([](signal_set& set, bool& done) -> task<void> {
          while (!done) (void)co_await next_signal(set, 50ms);
        }(set, done));
        for (int i = 0; i <= rounds; ++i) {
          int rc = co_await with_timeout(3s, readable(from_child));
          char c = 0;
          if (rc < 0 || ::read(from_child, &c, 1) != 1) break;
          answers += c;
          if (c == 'x') break;
          if (i < rounds) ::kill(child, SIGUSR1);
        }
        done = true;
        co_await std::move(waiting);
        co_return first;
      }(set, child, from_child, answers));
  ::close(from_child);
  int status = 0;
  ::kill(child, SIGKILL);  // already gone unless it hung
  ::waitpid(child, &status, 0);
  EXPECT_EQ(parent_got, SIGUSR1) << "the delivery kept before the fork";
  EXPECT_EQ(answers, "r" + std::string(rounds, 'k'))
      << "r: the child started with nothing kept (p: it got the parent's), k: it got its "
         "signal, x: it did not within a second";
}

TEST(SignalSetArguments, BadSignalNumbersThrowInvalidArgumentSayingWhichAndWhere) {
  auto message_of = [](auto&& call) -> std::string {
    try {
      call();
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "no std::invalid_argument";
  };
  EXPECT_THAT(message_of([] { signal_set s{SIGKILL}; }),
              HasSubstr("signal_set::signal_set: signal 9 (SIGKILL) cannot be caught"));
  signal_set set;
  EXPECT_THAT(message_of([&] { set.add(SIGSTOP); }),
              HasSubstr("signal_set::add: signal 19 (SIGSTOP) cannot be caught"));
  for (int fault : {SIGSEGV, SIGBUS, SIGFPE, SIGILL}) {
    EXPECT_THAT(message_of([&] { set.add(fault); }), HasSubstr("synchronous fault"));
  }
  EXPECT_THAT(message_of([&] { set.add(0); }), HasSubstr("signal 0 is out of range"));
  EXPECT_THAT(message_of([&] { set.add(-1); }), HasSubstr("signal -1 is out of range"));
  EXPECT_THAT(message_of([&] { set.add(SIGRTMAX + 1); }), HasSubstr("out of range"));
  EXPECT_THAT(message_of([&] { set.add(32); }), HasSubstr("reserved by the C library"));
  EXPECT_THAT(message_of([&] { set.remove(1000); }),
              HasSubstr("signal_set::remove: signal 1000 is out of range"));
  // A refused number in the list leaves nothing behind: SIGUSR1, added before it, is removed.
  EXPECT_THROW((signal_set{SIGUSR1, SIGSEGV}), std::invalid_argument);
  EXPECT_EQ(disposition_of(SIGUSR1), SIG_DFL);
  // Real-time signals can be handled.
  EXPECT_NO_THROW(set.add(SIGRTMIN));
  EXPECT_NO_THROW(set.add(SIGRTMAX));
}

CORIO_INSTANTIATE_BACKENDS(SignalSet);

}  // namespace
