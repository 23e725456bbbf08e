// The receive path under the stream rules (stream-semantics.md S24, S35, S45, §17.5.6): what
// arrives while no read wants it is not read ahead into the stream, a read takes at most what
// one transport read would, EOF and errors come after the bytes sent before them, and closing
// a stream frees its fd at once and every receive buffer it held.
//
// On io_uring one multishot receive serves all the reads of a stream (loop_stats counts its
// arms, the buffers it held between reads and the plain receives made when the provided
// buffer ring ran empty); on epoll the same tests check the same observable behaviour.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "corio/corio.hpp"
#include "support/backends.hpp"
#include "support/raw_sockets.hpp"

using namespace corio;
using namespace std::chrono_literals;

namespace {

class StreamReceive : public corio::testing::backend_test {
 protected:
  bool uring() const { return GetParam() == backend::io_uring; }
  /// io_uring keeps a multishot receive per stream (Linux 6.0+, not CORIO_NO_MULTISHOT).
  bool multishot() const { return corio::testing::multishot_expected(GetParam()); }

  /// Runs `work` on a loop with a small provided-buffer ring (io_uring: 4 buffers of 4 KiB),
  /// so that a few streams that do not read can take every buffer.
  template <class T>
  T run_small_ring(task<T> work) {
    loop_options o = options();
    o.recv_buffer_count = 4;
    o.recv_buffer_size = 4096;
    event_loop loop(o);
    return loop.run(with_timeout(20s, std::move(work)));
  }
};

std::string pattern(std::size_t n, std::size_t seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + seed) % 26);
  return s;
}

/// Writes `data` on `from` and reads it on `to` with partial reads, checking the bytes. After
/// a large one, `to`'s next receives are large ones (io_uring: into strings).
task<void> send_through(tcp_stream& from, tcp_stream& to, const std::string& data) {
  co_await from.write(data);
  std::string got;
  while (got.size() < data.size()) got += co_await to.read_bytes(64 << 10, /*partial=*/true);
  EXPECT_EQ(got, data);
}

/// Receives so far that landed in a string (loop_stats::string_receives).
std::uint64_t string_receives() { return event_loop::current().stats().string_receives; }

TEST_P(StreamReceive, ManyReads_OneReceiveArmedPerStream) {
  constexpr int round_trips = 500;
  run([&]() -> task<void> {
    auto [a, b] = stream_pair();
    const std::string line = "ping\n";
    for (int i = 0; i < round_trips; ++i) {
      co_await a.write(line);
      EXPECT_EQ(co_await b.read_until("\n"), line);
      co_await b.write(line);
      EXPECT_EQ(co_await a.read_until("\n"), line);
    }
    const loop_stats& st = event_loop::current().stats();
    std::printf("[ receive  ] %s: %d round trips, %llu multishot arms, %llu recv requests\n",
                to_string(GetParam()), round_trips, (unsigned long long)st.multishot_arms,
                (unsigned long long)st.ops_by_kind[0]);
    if (multishot()) {
      EXPECT_EQ(st.multishot_arms, 2u) << "one multishot receive per stream serves every read";
    } else {
      EXPECT_EQ(st.multishot_arms, 0u);
    }
  }());
}

// A stream's first receive is single-shot on io_uring, and what it brings decides: a small one
// arms the multishot receive at its completion (which then holds what arrives between reads,
// as below); after a large one the stream stays single-shot and its receives land in strings.
// A multishot armed before the first bytes drained a peer's first burst into ring buffers,
// which cost a 64 KiB echo 1.9x the server CPU per message for the rest of the run
// (docs/performance.md, Large messages).
TEST_P(StreamReceive, FirstReceive_SmallArmsTheMultishot_LargeKeepsTheStreamSingleShot) {
  run([&]() -> task<void> {
    auto arms = [] { return event_loop::current().stats().multishot_arms; };  // a snapshot
    auto [a, b] = stream_pair();
    const std::uint64_t arms_before_small = arms();
    co_await a.write("x");
    EXPECT_EQ(co_await b.read_bytes(1), "x");
    const std::uint64_t small_arms = arms() - arms_before_small;
    if (multishot()) {
      EXPECT_EQ(small_arms, 1u) << "a small first receive did not arm the multishot at once";
    } else {
      EXPECT_EQ(small_arms, 0u);
    }

    auto [c, d] = stream_pair();
    const std::uint64_t arms_before_large = arms();
    const std::uint64_t strings_before = string_receives();
    const std::string burst = pattern(256 << 10, 3);
    c.write(burst);  // eager (S4): the burst is on its way before d reads
    co_await sleep_for(5ms);
    std::string got;
    while (got.size() < burst.size()) got += co_await d.read_bytes(64 << 10, /*partial=*/true);
    EXPECT_EQ(got, burst);
    co_await c.write("small\n");
    EXPECT_EQ(co_await d.read_until("\n"), "small\n");
    std::printf("[ receive  ] %s: first receive large: %llu multishot arms, %llu string receives\n",
                to_string(GetParam()), (unsigned long long)(arms() - arms_before_large),
                (unsigned long long)(string_receives() - strings_before));
    EXPECT_EQ(arms(), arms_before_large)
        << "a stream whose first receive was large armed a multishot";
    if (multishot()) {
      EXPECT_GT(string_receives(), strings_before) << "its large receives did not land in strings";
    }
  }());
}

TEST_P(StreamReceive, DataArrivingBetweenReads_IsNotReadAhead_S45) {
  run([&]() -> task<void> {
    auto [a, b] = stream_pair();
    co_await a.write("x");
    EXPECT_EQ(co_await b.read_bytes(1), "x");  // b's receive is now armed (io_uring)
    const std::string data = pattern(3000, 1);
    co_await a.write(data);
    co_await sleep_for(20ms);  // the bytes reach b's side while no read wants them
    EXPECT_EQ(b.buffered_bytes(), 0u) << "S45: nothing is read ahead into the stream";
    EXPECT_EQ(co_await b.read_bytes(data.size()), data);
    EXPECT_EQ(b.buffered_bytes(), 0u);
    if (multishot()) {
      EXPECT_GE(event_loop::current().stats().buffers_held, 1u);
    }
  }());
}

TEST_P(StreamReceive, SmallMessagesToAStreamThatDoesNotRead_AreNotReadAhead_S45) {
  // Each message arrives on its own (one send per loop turn). The few a multishot receive
  // holds must not make room for more by moving the oldest into the stream: that read ahead
  // without limit (199,600 of 200,000 bytes here), and a peer sending small messages to a
  // stream that does not read could fill memory instead of being held back by TCP.
  run([&]() -> task<void> {
    auto pair = corio::testing::make_tcp_pair();
    tcp_stream b(pair.second.release());
    const int a = pair.first.get();
    EXPECT_EQ(::send(a, "x", 1, MSG_NOSIGNAL), 1);
    EXPECT_EQ(co_await b.read_bytes(1), "x");  // b's receive is now armed (io_uring)
    const std::string message = pattern(100, 2);
    std::string sent;
    for (int i = 0; i < 2000; ++i) {
      ssize_t n = ::send(a, message.data(), message.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n <= 0) break;  // the transport holds the sender back: fine too
      sent.append(message, 0, static_cast<std::size_t>(n));
      co_await sleep_for(0ms);  // a loop turn: b's side sees each message on its own
    }
    co_await sleep_for(20ms);
    EXPECT_LE(b.buffered_bytes(), 4096u) << "S45: read ahead into the stream";
    EXPECT_EQ(co_await b.read_bytes(sent.size()), sent);
  }());
}

// A stream that receives faster than it reads gives up its multishot receive: the kernel kept
// filling ring buffers that had to wait for the reader, and the multishot was stopped and
// re-armed every few reads (raw echo of 64 KiB messages: 1.5x the CPU per message of
// single-shot receives). After the first such stop its receives are single-shot; the bytes,
// their order and S45 are unchanged.
TEST_P(StreamReceive, StreamReceivingFasterThanItReads_SwitchesToSingleShotReceives) {
  run([&]() -> task<void> {
    auto [a, b] = stream_pair();
    co_await a.write("x");
    EXPECT_EQ(co_await b.read_bytes(1), "x");  // b's receive is now armed (io_uring)
    auto arms = [] { return event_loop::current().stats().multishot_arms; };  // a snapshot
    std::uint64_t arms_after_first_burst = 0;
    for (int burst = 0; burst < 3; ++burst) {
      const std::string data = pattern(1 << 20, static_cast<std::size_t>(burst));
      a.write(data);
      co_await sleep_for(20ms);  // bytes pile up on b's side while no read wants them
      std::string got;
      while (got.size() < data.size()) got += co_await b.read_bytes(64 << 10, /*partial=*/true);
      EXPECT_EQ(got, data) << "burst " << burst;
      if (burst == 0) arms_after_first_burst = arms();
    }
    std::printf("[ receive  ] %s: %llu multishot arms after the first burst, %llu after three\n",
                to_string(GetParam()), (unsigned long long)arms_after_first_burst,
                (unsigned long long)arms());
    EXPECT_EQ(arms(), arms_after_first_burst)
        << "a stream that held a whole receive unread re-armed its multishot receive";
    // Still a working stream both ways, now on single-shot receives.
    co_await a.write("tail\n");
    EXPECT_EQ(co_await b.read_until("\n"), "tail\n");
  }());
}

TEST_P(StreamReceive, ReadIntoSmallSpans_TakeNoMoreThanTheirRoom_S24) {
  run([&]() -> task<void> {
    auto [a, b] = stream_pair();
    co_await a.write("x");
    EXPECT_EQ(co_await b.read_bytes(1), "x");
    const std::string data = pattern(10'000, 2);
    co_await a.write(data);
    co_await sleep_for(20ms);
    std::string got;
    std::vector<std::byte> span(100);
    while (got.size() < data.size()) {
      std::size_t n = co_await b.read_into(span);
      EXPECT_EQ(n, span.size());
      EXPECT_EQ(b.buffered_bytes(), 0u) << "S24: a read_into asks for no more than its room";
      got.append(reinterpret_cast<const char*>(span.data()), n);
    }
    EXPECT_EQ(got, data);
  }());
}

TEST_P(StreamReceive, EofBehindDataThatArrivedBetweenReads_ComesAfterTheBytes_S35) {
  run([&]() -> task<void> {
    auto [a, b] = stream_pair();
    co_await a.write("x");
    EXPECT_EQ(co_await b.read_bytes(1), "x");
    co_await a.write("tail of the stream");
    a.close();
    co_await sleep_for(20ms);  // data and FIN both arrived; b reads nothing meanwhile
    EXPECT_FALSE(b.closed()) << "EOF is noticed by a read, after the bytes before it";
    EXPECT_EQ(co_await b.read_bytes(4), "tail");
    EXPECT_EQ(co_await b.read_until_close(), " of the stream");
    EXPECT_TRUE(b.closed());
  }());
}

TEST_P(StreamReceive, StreamsThatDoNotRead_DoNotStallTheOthers_RingEmpty) {
  constexpr int holders = 6;
  constexpr int talkers = 2;
  run_small_ring([&]() -> task<void> {
    std::vector<std::pair<tcp_stream, tcp_stream>> pairs;
    for (int i = 0; i < holders + talkers; ++i) {
      pairs.push_back(stream_pair());
      co_await pairs.back().first.write("x");
      EXPECT_EQ(co_await pairs.back().second.read_bytes(1), "x");
    }
    // Each holder's peer sends 8 KiB that nobody reads yet: on io_uring they fill the ring.
    for (int i = 0; i < holders; ++i) co_await pairs[i].first.write(pattern(8192, i));
    co_await sleep_for(20ms);
    for (int i = holders; i < holders + talkers; ++i) {
      auto& [a, b] = pairs[i];
      for (int k = 0; k < 50; ++k) {
        std::string msg = pattern(100, k);
        co_await a.write(msg);
        EXPECT_EQ(co_await b.read_bytes(msg.size()), msg);
      }
    }
    for (int i = 0; i < holders; ++i) {
      EXPECT_EQ(co_await pairs[i].second.read_bytes(8192), pattern(8192, i));
    }
    const loop_stats& st = event_loop::current().stats();
    std::printf("[ receive  ] %s: ring of 4: %llu buffers held, %llu ring-empty receives\n",
                to_string(GetParam()), (unsigned long long)st.buffers_held,
                (unsigned long long)st.ring_empty_fallbacks);
    if (multishot()) {
      EXPECT_GE(st.ring_empty_fallbacks, 1u) << "the talkers were served while the ring was empty";
    }
  }());
}

// Single-shot receives (a stream's first one, and every one of a stream that receives large
// amounts) take provided buffers too. When streams that do not read hold all of them, such a
// receive goes into scratch memory of its own instead of retrying on ENOBUFS until a holder
// reads, which could be never.
TEST_P(StreamReceive, SingleShotReceivesFindingTheRingEmpty_AreServed) {
  run_small_ring([&]() -> task<void> {
    std::vector<std::pair<tcp_stream, tcp_stream>> holders;
    for (std::size_t i = 0; i < 4; ++i) {
      holders.push_back(stream_pair());
      co_await holders.back().first.write("x");
      EXPECT_EQ(co_await holders.back().second.read_bytes(1), "x");
      co_await holders.back().first.write(pattern(8192, i));  // nobody reads it yet
    }
    co_await sleep_for(20ms);  // io_uring: the holders' multishots took every buffer
    const std::uint64_t fallbacks = event_loop::current().stats().ring_empty_fallbacks;
    auto [a, b] = stream_pair();
    const std::string first = pattern(100, 7);  // b's first receive: single-shot
    co_await a.write(first);
    EXPECT_EQ(co_await b.read_bytes(first.size()), first);
    auto [c, d] = stream_pair();
    const std::string bulk = pattern(64 << 10, 8);  // d's receives stay single-shot
    c.write(bulk);
    std::string got;
    while (got.size() < bulk.size()) got += co_await d.read_bytes(16 << 10, /*partial=*/true);
    EXPECT_EQ(got, bulk);
    const std::uint64_t served = event_loop::current().stats().ring_empty_fallbacks - fallbacks;
    std::printf("[ receive  ] %s: ring of 4 held: %llu receives into scratch\n",
                to_string(GetParam()), (unsigned long long)served);
    if (multishot()) {
      EXPECT_GE(served, 2u) << "the new streams' receives did not fall back to scratch memory";
    }
    for (std::size_t i = 0; i < holders.size(); ++i) {
      EXPECT_EQ(co_await holders[i].second.read_bytes(8192), pattern(8192, i));
    }
  }());
}

TEST_P(StreamReceive, ClosingStreamsThatHoldData_FreesFdsAndReceiveBuffers) {
  const int fds_before_loop = corio::testing::open_fd_count();
  run_small_ring([&]() -> task<void> {
    const int fds_before = corio::testing::open_fd_count();
    for (int round = 0; round < 3; ++round) {
      std::vector<std::pair<tcp_stream, tcp_stream>> pairs;
      for (int i = 0; i < 4; ++i) {
        pairs.push_back(stream_pair());
        co_await pairs.back().first.write("x");
        EXPECT_EQ(co_await pairs.back().second.read_bytes(1), "x");
        co_await pairs.back().first.write(pattern(6000, i));
      }
      co_await sleep_for(10ms);  // every buffer of the ring is held by a stream
      pairs.clear();
      EXPECT_EQ(corio::testing::open_fd_count(), fds_before)
          << "closing a stream closes its fd at once (round " << round << ")";
    }
    // Had the closed streams kept their buffers, this receive could only use the fallback.
    const std::uint64_t fallbacks = event_loop::current().stats().ring_empty_fallbacks;
    auto [a, b] = stream_pair();
    const std::string data = pattern(12'000, 9);
    co_await a.write(data);
    EXPECT_EQ(co_await b.read_bytes(data.size()), data);
    EXPECT_EQ(event_loop::current().stats().ring_empty_fallbacks, fallbacks);
  }());
  EXPECT_EQ(corio::testing::open_fd_count(), fds_before_loop);
}

TEST_P(StreamReceive, ClosingAnIdleStreamAfterReads_ClosesItsFdAtOnce) {
  run([&]() -> task<void> {
    auto [a, b] = stream_pair();
    co_await a.write("x");
    EXPECT_EQ(co_await b.read_bytes(1), "x");
    const int open = corio::testing::open_fd_count();
    b.close();
    EXPECT_EQ(corio::testing::open_fd_count(), open - 1);
    EXPECT_EQ(co_await a.read_until_close(), "");  // and the peer sees the FIN
  }());
}

// After a large receive, io_uring receives land in a string that the read returns whole
// (loop_stats::string_receives) instead of a provided buffer copied out. The bytes, their
// order and the size bound of results are those of every other receive; epoll, which
// copies out of its scratch block, makes none.
TEST_P(StreamReceive, LargeReceives_LandInTheReadsResultString) {
  run([&]() -> task<void> {
    auto [a, b] = stream_pair();
    co_await a.write("x");
    EXPECT_EQ(co_await b.read_bytes(1), "x");
    const std::uint64_t before = string_receives();
    for (std::size_t round = 0; round < 6; ++round) {
      const std::string data = pattern(48 << 10, round);
      a.write(data);
      std::string got;
      while (got.size() < data.size()) {
        std::string part = co_await b.read_bytes(64 << 10, /*partial=*/true);
        EXPECT_LE(part.capacity(), 2 * part.size() + 64) << "a result held a much larger block";
        got += part;
      }
      EXPECT_EQ(got, data) << "round " << round;
    }
    for (std::size_t round = 0; round < 4; ++round) {
      const std::string line = pattern(20'000, round) + "\n";
      a.write(line);
      EXPECT_EQ(co_await b.read_until("\n"), line) << "line " << round;
      const std::string exact = pattern(30'000, round + 1);
      a.write(exact);
      EXPECT_EQ(co_await b.read_bytes(exact.size()), exact) << "read_bytes(n) " << round;
    }
    const std::uint64_t made = string_receives() - before;
    std::printf("[ receive  ] %s: %llu receives into strings\n", to_string(GetParam()),
                (unsigned long long)made);
    if (multishot()) {
      EXPECT_GT(made, 0u) << "large receives still went through provided buffers";
    } else if (!uring()) {
      EXPECT_EQ(made, 0u) << "epoll copies out of its scratch block";
    }
    // A small read right after a large receive: one receive for prefix and body, as before.
    const std::string block = pattern(8192, 9);
    co_await a.write(block);
    co_await sleep_for(5ms);  // all of it waits at b: one receive brings it
    EXPECT_EQ(co_await b.read_bytes(block.size()), block);
    const std::uint64_t before_small = string_receives();
    task<std::string> prefix = b.read_bytes(4);
    co_await a.write("0005hello");
    EXPECT_EQ(co_await std::move(prefix), "0005");
    EXPECT_EQ(co_await b.read_bytes(5), "hello");
    EXPECT_EQ(string_receives(), before_small) << "a 4-byte read received into a string";
    // Small messages after large ones: same stream, same bytes.
    co_await a.write("tail\n");
    EXPECT_EQ(co_await b.read_until("\n"), "tail\n");
  }());
}

// A read that gives up (its timeout) while its receive is in flight leaves that receive to
// the stream: the bytes it brings are the next read's, in order (S13, S45).
TEST_P(StreamReceive, ReadTimingOutDuringAStringReceive_LeavesItsBytesToTheNextRead_S13) {
  run([&]() -> task<void> {
    auto [a, b] = stream_pair();
    const std::string large = pattern(40 << 10, 1);
    co_await send_through(a, b, large);
    const std::uint64_t before = string_receives();
    bool timed_out = false;
    try {
      (void)co_await with_timeout(20ms, b.read_bytes(64 << 10, /*partial=*/true));
    } catch (const timeout_error&) {
      timed_out = true;
    }
    EXPECT_TRUE(timed_out);
    if (multishot()) {
      EXPECT_EQ(string_receives(), before + 1) << "the read's receive was not into a string";
    }
    const std::string next = pattern(10'000, 2);
    co_await a.write(next);
    EXPECT_EQ(co_await b.read_bytes(next.size()), next);
  }());
}

// Closing a stream whose receive is in flight (into a string, on io_uring) frees the string
// when the completion arrives, not before: the kernel may write into it until then (io_uring
// rule 1). The loop goes on serving other streams; LeakSanitizer checks the string is freed.
TEST_P(StreamReceive, ClosingAStreamDuringAStringReceive_KeepsTheStringUntilItsCompletion) {
  run([&]() -> task<void> {
    auto [a, b] = stream_pair();
    const std::string large = pattern(40 << 10, 3);
    co_await send_through(a, b, large);
    const std::uint64_t before = string_receives();
    task<std::string> pending = b.read_bytes(64 << 10, /*partial=*/true);  // eager (S4)
    if (multishot()) {
      EXPECT_EQ(string_receives(), before + 1) << "the read's receive was not into a string";
    }
    const int open = corio::testing::open_fd_count();
    b.close();
    EXPECT_EQ(corio::testing::open_fd_count(), open - 1) << "the fd waits for the receive";
    bool closed = false;
    try {
      (void)co_await std::move(pending);
    } catch (const stream_closed_error&) {
      closed = true;
    }
    EXPECT_TRUE(closed);
    try {
      co_await a.write(large);  // into a closed peer: the kernel may still be receiving
    } catch (const stream_closed_error&) {
    }
    co_await sleep_for(10ms);
    auto [c, d] = stream_pair();
    co_await c.write(large);
    std::string other;
    while (other.size() < large.size()) {
      other += co_await d.read_bytes(64 << 10, /*partial=*/true);
    }
    EXPECT_EQ(other, large);
  }());
}

CORIO_INSTANTIATE_BACKENDS(StreamReceive);

}  // namespace
