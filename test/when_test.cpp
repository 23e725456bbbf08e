// when_all and when_any (when.hpp): values and order, void and reference tasks, tasks decided
// at the call, failure and cancellation (a pending read withdrawn with no byte lost, S13), the
// decided-but-not-resumed loser handed back, destroying the parent, empty inputs, and long
// inputs of ready tasks (no stack growth). I/O and timer tests run on both backends.
#include "corio/when.hpp"

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "corio/corio.hpp"
#include "support/backends.hpp"

using namespace corio;
using namespace std::chrono_literals;

namespace {

class When : public corio::testing::backend_test {};

task<int> value_after(std::chrono::milliseconds delay, int value) {
  co_await sleep_for(delay);
  co_return value;
}

task<int> fail_after(std::chrono::milliseconds delay, std::string what) {
  co_await sleep_for(delay);
  throw std::runtime_error(what);
}

/// Sets *flag when destroyed: shows that a coroutine frame was destroyed (cancelled).
class set_on_destroy {
 public:
  explicit set_on_destroy(bool* flag) : flag_(flag) {}
  set_on_destroy(const set_on_destroy&) = delete;
  ~set_on_destroy() { *flag_ = true; }

 private:
  bool* flag_;
};

/// Sleeps for an hour unless destroyed first (which sets *destroyed).
task<void> sleeper(bool* destroyed) {
  set_on_destroy guard(destroyed);
  co_await sleep_for(1h);
}

/// sleeper() as a task<int>, for the vector forms.
task<int> int_sleeper(bool* destroyed) {
  co_await sleeper(destroyed);
  co_return 0;
}

/// Closes a stream when destroyed: cancelling the coroutine that holds one decides a read
/// pending on that stream (it fails with stream_closed_error).
class close_on_destroy {
 public:
  explicit close_on_destroy(tcp_stream* stream) : stream_(stream) {}
  close_on_destroy(close_on_destroy&& other) noexcept
      : stream_(std::exchange(other.stream_, nullptr)) {}
  ~close_on_destroy() {
    if (stream_ != nullptr) stream_->close();
  }

 private:
  tcp_stream* stream_;
};

/// Sleeps for an hour; cancelling it closes *stream.
task<int> closes_when_cancelled(tcp_stream* stream) {
  close_on_destroy guard(stream);
  co_await sleep_for(1h);
  co_return 0;
}

/// Never started in the tests that use it: destroying its frame destroys the parameter,
/// which closes the stream.
task<int> lazy_closer([[maybe_unused]] close_on_destroy guard) {
  co_await sleep_for(1h);
  co_return 0;
}

task<int> after_a_turn(int value) {
  co_await sleep_for(0ms);
  co_return value;
}

/// Reads a line after a loop turn: started with corio::start, its read is decided (served
/// from the buffer) in the same turn as after_a_turn's result.
task<std::string> line_after_a_turn(tcp_stream& s) {
  co_await sleep_for(0ms);
  co_return co_await s.read_until("\n");
}

// ------------------------------------------------------------------ when_all

TEST_P(When, WhenAll_ValuesComeInArgumentOrder_TasksRunConcurrently) {
  std::vector<int> finished;
  auto child = [&finished](std::chrono::milliseconds delay, int value) -> task<int> {
    co_await sleep_for(delay);
    finished.push_back(value);
    co_return value;
  };
  auto body = [&]() -> task<void> {
    auto t = when_all(child(40ms, 1), child(1ms, 2), child(20ms, 3));
    EXPECT_FALSE(t.is_ready());
    auto [a, b, c] = co_await std::move(t);
    EXPECT_EQ(a, 1);
    EXPECT_EQ(b, 2);
    EXPECT_EQ(c, 3);
  };
  run(body());
  EXPECT_EQ(finished, (std::vector<int>{2, 3, 1}));  // in time order: they ran together
}

TEST_P(When, WhenAll_VoidTasksGiveMonostate_ReferencesGiveReferenceWrappers) {
  int target = 1;
  auto ref = [&target]() -> task<int&> {
    co_await sleep_for(1ms);
    co_return target;
  };
  auto body = [&]() -> task<void> {
    auto all =
        co_await when_all(sleep_for(2ms), value_after(1ms, 7), ref(), detail::make_ready_task());
    static_assert(
        std::is_same_v<decltype(all), std::tuple<std::monostate, int, std::reference_wrapper<int>,
                                                 std::monostate>>);
    EXPECT_EQ(std::get<1>(all), 7);
    std::get<2>(all).get() = 5;
    EXPECT_EQ(target, 5);
  };
  run(body());
}

TEST_P(When, WhenAll_TasksDecidedAtTheCall_GiveAResultDecidedAtTheCall_S7) {
  auto body = []() -> task<void> {
    auto [a, b] = stream_pair();
    co_await a.write("one\ntwo\n");
    std::string first = co_await b.read_until("\n");
    EXPECT_EQ(first, "one\n");
    CO_ASSERT_TRUE(b.buffered_bytes() == 4);  // one send, one receive: "two\n" is buffered
    const auto blocks = detail::pool_stats().live_blocks;
    auto t = when_all(b.read_until("\n"), detail::make_ready_task<int>(7));
    EXPECT_TRUE(t.is_ready());
    EXPECT_EQ(detail::pool_stats().live_blocks, blocks);  // no frame: nothing to run
    auto [line, seven] = co_await std::move(t);
    EXPECT_EQ(line, "two\n");
    EXPECT_EQ(seven, 7);
    EXPECT_FALSE(b.reading());
  };
  run(body());
}

TEST_P(When, WhenAll_OneFails_TheOthersAreCancelled_PendingReadWithdrawnNoByteLost_S13) {
  auto body = []() -> task<void> {
    auto [a, b] = stream_pair();
    co_await a.write("hel");
    bool slept_out = false;
    std::string caught;
    try {
      co_await when_all(b.read_until("\n"), sleeper(&slept_out), fail_after(20ms, "boom"));
    } catch (const std::runtime_error& e) {
      caught = e.what();
    }
    EXPECT_EQ(caught, "boom");
    EXPECT_TRUE(slept_out);  // the sleeper's frame was destroyed before the error came out
    EXPECT_FALSE(b.reading());
    EXPECT_FALSE(b.closed());
    EXPECT_EQ(b.buffered_bytes(), 3u);  // "hel" arrived and is still there
    co_await a.write("lo\n");
    std::string line = co_await b.read_until("\n");
    EXPECT_EQ(line, "hello\n");
  };
  run(body());
}

TEST_P(When, WhenAll_TheFirstFailureInTimeIsRethrown) {
  auto body = []() -> task<void> {
    std::string caught;
    try {
      co_await when_all(fail_after(30ms, "late"), value_after(1ms, 1), fail_after(2ms, "early"));
    } catch (const std::runtime_error& e) {
      caught = e.what();
    }
    EXPECT_EQ(caught, "early");
  };
  run(body());
}

TEST_P(When, WhenAll_ATaskFailingAsItStarts_CancelsTheOnesStarted_StartsNoMore) {
  bool later_started = false;
  auto throws_at_once = []() -> task<int> {
    throw std::runtime_error("at once");
    co_return 0;
  };
  auto later = [&later_started]() -> task<int> {
    later_started = true;
    co_return 2;
  };
  auto body = [&]() -> task<void> {
    bool destroyed = false;
    std::string caught;
    try {
      co_await when_all(sleeper(&destroyed), throws_at_once(), later());
    } catch (const std::runtime_error& e) {
      caught = e.what();
    }
    EXPECT_EQ(caught, "at once");
    EXPECT_TRUE(destroyed);
    EXPECT_FALSE(later_started);
  };
  run(body());
}

TEST_P(When, WhenAll_ATaskFailedAtTheCall_FailsWithoutStartingTheOthers) {
  bool started = false;
  auto lazy = [&started]() -> task<int> {
    started = true;
    co_return 1;
  };
  auto body = [&]() -> task<void> {
    auto [a, b] = stream_pair();
    b.close();
    bool closed_error = false;
    try {
      co_await when_all(lazy(), b.read_until("\n"));  // S10: fails at the call
    } catch (const stream_closed_error&) {
      closed_error = true;
    }
    EXPECT_TRUE(closed_error);
    EXPECT_FALSE(started);
  };
  run(body());
}

TEST_P(When, WhenAll_Vector_ValuesInVectorOrder) {
  auto body = []() -> task<void> {
    std::vector<task<int>> tasks;
    for (int i = 0; i < 5; ++i)
      tasks.push_back(value_after(std::chrono::milliseconds(10 - 2 * i), i));
    tasks.push_back(detail::make_ready_task<int>(5));
    std::vector<int> values = co_await when_all(std::move(tasks));
    EXPECT_EQ(values, (std::vector<int>{0, 1, 2, 3, 4, 5}));

    int count = 0;
    auto bump = [&count]() -> task<void> {
      co_await sleep_for(1ms);
      ++count;
    };
    std::vector<task<void>> voids;
    voids.push_back(bump());
    voids.push_back(bump());
    auto done = when_all(std::move(voids));
    static_assert(std::is_same_v<decltype(done), task<void>>);
    co_await std::move(done);
    EXPECT_EQ(count, 2);
  };
  run(body());
}

TEST_P(When, WhenAll_Vector_OneFails_TheOthersAreCancelled) {
  auto body = []() -> task<void> {
    bool destroyed = false;
    std::vector<task<int>> tasks;
    tasks.push_back(int_sleeper(&destroyed));
    tasks.push_back(fail_after(1ms, "vector boom"));
    std::string caught;
    try {
      co_await when_all(std::move(tasks));
    } catch (const std::runtime_error& e) {
      caught = e.what();
    }
    EXPECT_EQ(caught, "vector boom");
    EXPECT_TRUE(destroyed);
  };
  run(body());
}

TEST(WhenNoTasks, WhenAllOfNone_IsAnEmptyResultAtOnce) {
  auto none = when_all();
  static_assert(std::is_same_v<decltype(none), task<std::tuple<>>>);
  EXPECT_TRUE(none.is_ready());
  auto empty = when_all(std::vector<task<int>>{});
  EXPECT_TRUE(empty.is_ready());
  auto empty_void = when_all(std::vector<task<void>>{});
  EXPECT_TRUE(empty_void.is_ready());
  event_loop loop;
  EXPECT_TRUE(loop.run(std::move(empty)).empty());
  loop.run(std::move(empty_void));
}

TEST(WhenNoTasks, WhenAnyOfNone_ThrowsInvalidArgument) {
  EXPECT_THROW((void)when_any(std::vector<task<int>>{}), std::invalid_argument);
}

TEST(WhenNoTasks, AnEmptyTask_ThrowsInvalidArgumentAtTheCall) {
  EXPECT_THROW((void)when_all(detail::make_ready_task<int>(1), task<int>()), std::invalid_argument);
  EXPECT_THROW((void)when_any(task<void>()), std::invalid_argument);
  std::vector<task<int>> tasks;
  tasks.emplace_back();
  EXPECT_THROW((void)when_all(std::move(tasks)), std::invalid_argument);
}

// ------------------------------------------------------------------ when_any

TEST_P(When, WhenAny_ReadBeatsTimer_TimerBeatsRead_TheLosingReadIsWithdrawn_S13) {
  auto body = []() -> task<void> {
    auto [a, b] = stream_pair();
    co_await a.write("ping\n");
    auto first = co_await when_any(b.read_until("\n"), sleep_for(10s));
    EXPECT_EQ(first.index, 0u);
    EXPECT_EQ(std::get<0>(first.value), "ping\n");

    co_await a.write("pa");
    auto second = co_await when_any(b.read_until("\n"), sleep_for(20ms));
    EXPECT_EQ(second.index, 1u);
    EXPECT_EQ(second.value.index(), 1u);
    EXPECT_FALSE(std::get<0>(second.also_finished));  // withdrawn, not finished
    EXPECT_FALSE(b.reading());
    co_await a.write("rt\n");
    std::string line = co_await b.read_until("\n");
    EXPECT_EQ(line, "part\n");
  };
  run(body());
}

TEST_P(When, WhenAny_ATaskDecidedAtTheCall_WinsAtOnce_PendingOnesCancelledAtTheCall) {
  bool started = false;
  auto lazy = [&started]() -> task<int> {
    started = true;
    co_return 1;
  };
  auto body = [&]() -> task<void> {
    auto [a, b] = stream_pair();
    auto t = when_any(lazy(), b.read_until("\n"), detail::make_ready_task<int>(5),
                      detail::make_ready_task<int>(6));
    EXPECT_TRUE(t.is_ready());
    EXPECT_FALSE(b.reading());  // the pending read was withdrawn at the call
    auto r = co_await std::move(t);
    EXPECT_EQ(r.index, 2u);
    EXPECT_EQ(std::get<2>(r.value), 5);
    EXPECT_FALSE(std::get<0>(r.also_finished));
    EXPECT_FALSE(std::get<1>(r.also_finished));
    EXPECT_FALSE(std::get<2>(r.also_finished));
    CO_ASSERT_TRUE(std::get<3>(r.also_finished).is_ready());  // decided too: handed back
    int six = co_await std::move(std::get<3>(r.also_finished));
    EXPECT_EQ(six, 6);
    EXPECT_FALSE(started);
  };
  run(body());
}

TEST_P(When, WhenAny_ATaskFinishingAsItStarts_Wins_LaterOnesAreNotStarted) {
  bool later_started = false;
  auto immediate = [](int value) -> task<int> { co_return value; };
  auto later = [&later_started]() -> task<int> {
    later_started = true;
    co_return 3;
  };
  auto body = [&]() -> task<void> {
    bool destroyed = false;
    auto r = co_await when_any(int_sleeper(&destroyed), immediate(1), later());
    EXPECT_EQ(r.index, 1u);
    EXPECT_EQ(std::get<1>(r.value), 1);
    EXPECT_TRUE(destroyed);
    EXPECT_FALSE(later_started);
    EXPECT_FALSE(std::get<0>(r.also_finished));
    EXPECT_FALSE(std::get<2>(r.also_finished));  // a lazy task not started is cancelled
  };
  run(body());
}

TEST_P(When, WhenAny_TwoReadsDecidedAtTheCall_TheSecondLineIsHandedBack) {
  auto body = []() -> task<void> {
    auto [a, b] = stream_pair();
    auto [c, d] = stream_pair();
    co_await a.write("x\ny\n");
    co_await c.write("1\n2\n");
    std::string x = co_await b.read_until("\n");
    std::string one = co_await d.read_until("\n");
    CO_ASSERT_TRUE(b.buffered_bytes() == 2 && d.buffered_bytes() == 2);
    auto r = co_await when_any(b.read_until("\n"), d.read_until("\n"));
    EXPECT_EQ(r.index, 0u);
    EXPECT_EQ(std::get<0>(r.value), "y\n");
    CO_ASSERT_TRUE(std::get<1>(r.also_finished).is_ready());
    std::string two = co_await std::move(std::get<1>(r.also_finished));
    EXPECT_EQ(two, "2\n");
  };
  run(body());
}

// The crucial case: when the winner resumes, another task's operation has been decided in
// the same loop turn (a read that consumed its bytes), its resumption still queued behind
// the winner's. It cannot be withdrawn any more, so it is handed back, not dropped.
TEST_P(When, WhenAny_ALoserDecidedInTheSameTurn_IsHandedBackWithItsBytes) {
  auto body = []() -> task<void> {
    auto [a, b] = stream_pair();
    co_await a.write("first\nsecond\n");
    std::string first = co_await b.read_until("\n");
    CO_ASSERT_TRUE(b.buffered_bytes() == 7);
    // Both started work items sleep for one turn; in that turn the first returns 1 and the
    // second reads "second\n" from the buffer. Both operations are then decided, and the
    // when_any child awaiting the first is resumed first.
    auto r = co_await when_any(corio::start(after_a_turn(1)), corio::start(line_after_a_turn(b)));
    EXPECT_EQ(r.index, 0u);
    EXPECT_EQ(std::get<0>(r.value), 1);
    EXPECT_FALSE(b.reading());
    EXPECT_EQ(b.buffered_bytes(), 0u);  // the loser's read consumed the line ...
    CO_ASSERT_TRUE(std::get<1>(r.also_finished).is_ready());
    std::string second = co_await std::move(std::get<1>(r.also_finished));
    EXPECT_EQ(second, "second\n");  // ... and here it is

    // The same with values, and a failure handed back as a task that rethrows it.
    auto fails = []() -> task<int> {
      co_await sleep_for(0ms);
      throw std::runtime_error("loser failed");
    };
    auto r2 = co_await when_any(corio::start(after_a_turn(2)), corio::start(after_a_turn(3)),
                                corio::start(fails()));
    EXPECT_EQ(r2.index, 0u);
    EXPECT_EQ(std::get<0>(r2.value), 2);
    CO_ASSERT_TRUE(std::get<1>(r2.also_finished).is_ready());
    int three = co_await std::move(std::get<1>(r2.also_finished));
    EXPECT_EQ(three, 3);
    CO_ASSERT_TRUE(std::get<2>(r2.also_finished).is_ready());
    std::string caught;
    try {
      co_await std::move(std::get<2>(r2.also_finished));
    } catch (const std::runtime_error& e) {
      caught = e.what();
    }
    EXPECT_EQ(caught, "loser failed");
  };
  run(body());
}

// Cancelling one loser can decide another: here the first task's cancellation closes the
// stream on which the third task's read is pending. That read was pending when the winner
// was decided, so it is cancelled like any pending loser (an empty task in also_finished),
// not handed back as if it had finished with stream_closed_error. The third task was never
// started by when_any (the second won while starting); at the call, nothing is started.
TEST_P(When, WhenAny_ALoserDecidedByCancellingAnother_IsCancelledNotHandedBack_NotStarted) {
  auto body = []() -> task<void> {
    auto immediate = [](int value) -> task<int> { co_return value; };
    {
      auto [a, b] = stream_pair();
      auto r = co_await when_any(closes_when_cancelled(&b), immediate(1), b.read_until("\n"));
      EXPECT_EQ(r.index, 1u);
      EXPECT_FALSE(std::get<0>(r.also_finished));
      EXPECT_FALSE(std::get<2>(r.also_finished));  // was: a read failed by the close
      EXPECT_TRUE(b.closed());
    }
    {  // decided at the call: the lazy loser's frame (its parameter) is what closes the stream
      auto [a, b] = stream_pair();
      auto t = when_any(lazy_closer(close_on_destroy(&b)), detail::make_ready_task<int>(5),
                        b.read_until("\n"));
      CO_ASSERT_TRUE(t.is_ready());
      auto r = co_await std::move(t);
      EXPECT_EQ(r.index, 1u);
      EXPECT_FALSE(std::get<0>(r.also_finished));
      EXPECT_FALSE(std::get<2>(r.also_finished));  // was: a read failed by the close
      EXPECT_TRUE(b.closed());
    }
  };
  run(body());
}

// The same with a started loser: its child waits on the read, so the close also queued the
// child's resumption. Handing the task back left that resumption queued for a child frame
// that when_any then destroyed; the sleep below lets the queue run (ASan checks).
TEST_P(When, WhenAny_AStartedLoserDecidedByCancellingAnother_IsCancelled_ResumesNothing) {
  auto body = []() -> task<void> {
    const auto blocks = detail::pool_stats().live_blocks;
    {
      auto [a, b] = stream_pair();
      auto r =
          co_await when_any(closes_when_cancelled(&b), b.read_until("\n"), value_after(1ms, 7));
      EXPECT_EQ(r.index, 2u);
      EXPECT_EQ(std::get<2>(r.value), 7);
      EXPECT_FALSE(std::get<0>(r.also_finished));
      EXPECT_FALSE(std::get<1>(r.also_finished));  // was: a read failed by the close
      EXPECT_TRUE(b.closed());
      co_await sleep_for(1ms);  // a few turns with the result alive: nothing may resume
      co_await sleep_for(1ms);
    }
    EXPECT_EQ(detail::pool_stats().live_blocks, blocks);
  };
  run(body());
}

// Lines arriving on two streams at about the same time: whichever way the race goes (the
// loser withdrawn, or decided in the winner's turn and handed back), no line is lost. (On
// both backends both reads are usually decided in the same turn: dropping the loser there
// loses its line in every round.)
TEST_P(When, WhenAny_TwoStreamsRacing_NoLineIsLost) {
  auto body = []() -> task<void> {
    auto [a, b] = stream_pair();
    auto [c, d] = stream_pair();
    for (int i = 0; i < 20; ++i) {
      std::string left = "L" + std::to_string(i) + "\n";
      std::string right = "R" + std::to_string(i) + "\n";
      a.write(left);
      c.write(right);
      co_await a.write("");
      co_await c.write("");
      auto r = co_await when_any(b.read_until("\n"), d.read_until("\n"));
      std::string got_left;
      std::string got_right;
      if (r.index == 0) {
        got_left = std::get<0>(r.value);
        if (std::get<1>(r.also_finished)) {
          got_right = co_await std::move(std::get<1>(r.also_finished));
        } else {
          got_right = co_await with_timeout(5s, d.read_until("\n"));
        }
      } else {
        got_right = std::get<1>(r.value);
        if (std::get<0>(r.also_finished)) {
          got_left = co_await std::move(std::get<0>(r.also_finished));
        } else {
          got_left = co_await with_timeout(5s, b.read_until("\n"));
        }
      }
      EXPECT_EQ(got_left, left);
      EXPECT_EQ(got_right, right);
    }
  };
  run(body());
}

TEST_P(When, WhenAny_TheWinnersFailureIsRethrown_AfterTheOthersAreCancelled) {
  auto body = []() -> task<void> {
    bool destroyed = false;
    std::string caught;
    try {
      co_await when_any(fail_after(1ms, "first failed"), sleeper(&destroyed));
    } catch (const std::runtime_error& e) {
      caught = e.what();
    }
    EXPECT_EQ(caught, "first failed");
    EXPECT_TRUE(destroyed);
  };
  run(body());
}

TEST_P(When, WhenAny_Vector_IndexIsThePositionInTheVector) {
  auto body = []() -> task<void> {
    bool destroyed = false;
    std::vector<task<int>> tasks;
    tasks.push_back(int_sleeper(&destroyed));
    tasks.push_back(value_after(30ms, 1));
    tasks.push_back(value_after(1ms, 2));
    auto r = co_await when_any(std::move(tasks));
    EXPECT_EQ(r.index, 2u);
    EXPECT_EQ(r.value, 2);
    EXPECT_EQ(r.also_finished.size(), 3u);
    for (auto& t : r.also_finished) EXPECT_FALSE(t);
    EXPECT_TRUE(destroyed);

    std::vector<task<void>> voids;
    voids.push_back(sleep_for(1h));
    voids.push_back(sleep_for(1ms));
    auto v = co_await when_any(std::move(voids));
    static_assert(std::is_same_v<decltype(v.value), std::monostate>);
    EXPECT_EQ(v.index, 1u);
  };
  run(body());
}

// ------------------------------------------------------------------ the parent goes away

TEST_P(When, DestroyingTheParent_CancelsEveryChild_ReadWithdrawnNoByteLost_S13) {
  auto body = []() -> task<void> {
    auto [a, b] = stream_pair();
    co_await a.write("x\npar");
    // The stream's first read sets up what it keeps for later reads: count from after it.
    std::string x = co_await b.read_until("\n");
    EXPECT_EQ(x, "x\n");
    const auto blocks = detail::pool_stats().live_blocks;
    bool all_destroyed = false;
    bool any_destroyed = false;
    int timeouts = 0;
    try {
      co_await with_timeout(20ms, when_all(b.read_until("\n"), sleeper(&all_destroyed)));
    } catch (const timeout_error&) {
      ++timeouts;
    }
    EXPECT_TRUE(all_destroyed);
    EXPECT_FALSE(b.reading());
    try {
      co_await with_timeout(20ms, when_any(b.read_until("\n"), sleeper(&any_destroyed)));
    } catch (const timeout_error&) {
      ++timeouts;
    }
    EXPECT_EQ(timeouts, 2);
    EXPECT_TRUE(any_destroyed);
    EXPECT_FALSE(b.reading());
    EXPECT_EQ(detail::pool_stats().live_blocks, blocks);  // every frame and op freed

    {  // never awaited: the lazy child never starts, the read is withdrawn
      bool never = false;
      auto t = when_all(b.read_until("\n"), sleeper(&never));
      EXPECT_TRUE(b.reading());
    }
    EXPECT_FALSE(b.reading());
    EXPECT_EQ(detail::pool_stats().live_blocks, blocks);

    co_await a.write("t\n");
    std::string line = co_await b.read_until("\n");
    EXPECT_EQ(line, "part\n");
  };
  run(body());
}

// The parent is destroyed in the loop turn in which a child's operation was decided, its
// resumption queued: nothing may resume the destroyed child afterwards (ASan checks).
TEST_P(When, DestroyingTheParentWhileAChildsResumptionIsQueued_ResumesNothing) {
  auto body = []() -> task<void> {
    const auto blocks = detail::pool_stats().live_blocks;
    bool destroyed = false;
    {
      // start() runs the when_all until it suspends: its children wait on the two ops.
      auto parent = corio::start(when_all(corio::start(after_a_turn(1)), sleeper(&destroyed)));
      // This sleep's timer fires in the same turn as after_a_turn's, after it: the first
      // child's operation is then decided and its resumption queued for the next turn.
      co_await sleep_for(0ms);
      EXPECT_FALSE(parent.is_ready());
    }  // the parent goes, with the queued resumption
    EXPECT_TRUE(destroyed);
    co_await sleep_for(1ms);  // a few turns in which nothing may run
    co_await sleep_for(1ms);
    EXPECT_EQ(detail::pool_stats().live_blocks, blocks);
  };
  run(body());
}

// ------------------------------------------------------------------ many tasks

TEST(WhenMany, TenThousandReadyTasks_DoNotSuspendOrOverflowTheStack) {
  auto body = []() -> task<void> {
    std::vector<task<int>> tasks;
    for (int i = 0; i < 10'000; ++i) tasks.push_back(detail::make_ready_task<int>(i));
    auto all = when_all(std::move(tasks));
    EXPECT_TRUE(all.is_ready());
    std::vector<int> values = co_await std::move(all);
    CO_ASSERT_TRUE(values.size() == 10'000u);
    EXPECT_EQ(values.front(), 0);
    EXPECT_EQ(values.back(), 9'999);

    std::vector<task<int>> racers;
    for (int i = 0; i < 10'000; ++i) racers.push_back(detail::make_ready_task<int>(i));
    auto any = when_any(std::move(racers));
    EXPECT_TRUE(any.is_ready());
    auto r = co_await std::move(any);
    EXPECT_EQ(r.index, 0u);
    EXPECT_EQ(r.value, 0);
    CO_ASSERT_TRUE(r.also_finished.back().is_ready());
    int last = co_await std::move(r.also_finished.back());
    EXPECT_EQ(last, 9'999);

    // A long chain of awaits of combinators decided at the call: none suspends.
    long total = 0;
    for (int i = 0; i < 100'000; ++i) {
      auto one = co_await when_all(detail::make_ready_task<int>(1), detail::make_ready_task());
      total += std::get<0>(one);
    }
    EXPECT_EQ(total, 100'000);
  };
  event_loop loop;
  loop.run(body());
}

TEST(WhenMany, TenThousandLazyTasksFinishingAtOnce_RunOneAfterAnother) {
  auto body = []() -> task<void> {
    auto immediate = [](int i) -> task<int> { co_return i; };
    const auto blocks = detail::pool_stats().live_blocks;
    std::vector<task<int>> tasks;
    for (int i = 0; i < 10'000; ++i) tasks.push_back(immediate(i));
    std::vector<int> values = co_await when_all(std::move(tasks));
    CO_ASSERT_TRUE(values.size() == 10'000u);
    EXPECT_EQ(values[1234], 1234);
    EXPECT_EQ(detail::pool_stats().live_blocks, blocks);
  };
  event_loop loop;
  loop.run(body());
}

TEST_P(When, TenThousandPendingTasks_AllComplete_NoFrameLeft) {
  auto body = []() -> task<void> {
    const auto blocks = detail::pool_stats().live_blocks;
    std::vector<task<int>> tasks;
    for (int i = 0; i < 10'000; ++i) tasks.push_back(after_a_turn(i));
    std::vector<int> values = co_await when_all(std::move(tasks));
    CO_ASSERT_TRUE(values.size() == 10'000u);
    EXPECT_EQ(values[9'999], 9'999);
    EXPECT_EQ(detail::pool_stats().live_blocks, blocks);
  };
  run(body());
}

// ------------------------------------------------------------------ docs/concurrency.md

// The proxy of docs/concurrency.md, verbatim.
corio::task<void> pump(corio::tcp_stream& from, corio::tcp_stream& to) {
  try {
    for (;;) {
      std::string chunk = co_await from.read_bytes(64 << 10, /*partial=*/true);
      co_await to.write(std::move(chunk));
    }
  } catch (const corio::stream_closed_error&) {
    // `from` ended: EOF, or an error (from.error() says which)
  }
  to.close();  // ends the other direction too: its read of `to` fails
}

corio::task<void> proxy(corio::tcp_stream client, std::string host, std::uint16_t port) {
  corio::tcp_stream upstream = co_await corio::tcp_stream::connect(host, port);
  co_await corio::when_all(pump(client, upstream), pump(upstream, client));
}

TEST_P(When, Docs_TheProxyRelaysBothDirections) {
  auto body = []() -> task<void> {
    auto listener = tcp_listener::bind("127.0.0.1", 0);
    auto [user, proxied] = stream_pair();
    auto relay = corio::start(proxy(std::move(proxied), "127.0.0.1", listener.port()));
    tcp_stream server = co_await listener.accept();
    co_await user.write("hello\n");
    std::string request = co_await server.read_until("\n");
    EXPECT_EQ(request, "hello\n");
    co_await server.write("world\n");
    std::string reply = co_await user.read_until("\n");
    EXPECT_EQ(reply, "world\n");
    server.close();  // the proxy closes the client side, and ends
    std::string rest = co_await user.read_until_close();
    EXPECT_EQ(rest, "");
    co_await std::move(relay);
  };
  run(body());
}

CORIO_INSTANTIATE_BACKENDS(When);

}  // namespace
