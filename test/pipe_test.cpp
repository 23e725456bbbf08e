// pipe_stream: the stream engine over pipe fds (S56), on both backends: round trips, EOF,
// EPIPE without dying of SIGPIPE, small read chunks, backpressure, adopting a raw fd.
// After every test no fd is left open.
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <string>
#include <tuple>
#include <vector>

#include "corio/corio.hpp"
#include "support/backends.hpp"
#include "support/processes.hpp"

using namespace corio;
using namespace std::chrono_literals;
using corio::testing::describe_open_fds;
using corio::testing::open_fd_count;

namespace {

class Pipe : public corio::testing::backend_test {
 protected:
  void SetUp() override { fds_before_ = open_fd_count(); }
  void TearDown() override {
    EXPECT_EQ(open_fd_count(), fds_before_) << "fd leak; open now:\n" << describe_open_fds();
  }
  int fds_before_ = 0;
};

/// Read chunk sizes the line tests run with: 1 byte, a few bytes, the default.
class PipeChunks : public ::testing::TestWithParam<std::tuple<corio::backend, std::size_t>> {
 protected:
  void SetUp() override { fds_before_ = open_fd_count(); }
  void TearDown() override { EXPECT_EQ(open_fd_count(), fds_before_) << describe_open_fds(); }
  template <class T>
  T run(task<T> work) {
    loop_options o;
    o.backend = std::get<0>(GetParam());
    event_loop loop(o);
    return loop.run(with_timeout(std::chrono::seconds(20), std::move(work)));
  }
  stream_options chunked() const {
    stream_options s;
    s.read_chunk_size = std::get<1>(GetParam());
    return s;
  }
  int fds_before_ = 0;
};

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

bool sigpipe_pending() {
  sigset_t pending;
  sigpending(&pending);
  return sigismember(&pending, SIGPIPE) == 1;
}

bool sigpipe_blocked() {
  sigset_t mask;
  pthread_sigmask(SIG_BLOCK, nullptr, &mask);
  return sigismember(&mask, SIGPIPE) == 1;
}

TEST_P(Pipe, MakePipe_RoundTrip_S56) {
  run([]() -> task<void> {
    auto [r, w] = make_pipe();
    EXPECT_TRUE(r);
    EXPECT_TRUE(w);
    co_await w.write("hello\n");
    w.write("wor");
    w.write("ld\n");
    EXPECT_EQ(co_await r.read_until("\n"), "hello\n");
    EXPECT_EQ(co_await r.read_bytes(3), "wor");
    EXPECT_EQ(co_await r.read_until("\n"), "ld\n");
    EXPECT_FALSE(r.closed());
    EXPECT_FALSE(w.closed());
  }());
}

TEST_P(Pipe, AdoptingAnFdThatIsNotOpen_ThrowsInvalidArgumentNamingIt) {
  // pipe_stream(-1), or a number already closed, used to make a stream that looked open
  // (closed() false) and failed only at its first read with EBADF.
  run([]() -> task<void> {
    int fds[2];
    CO_ASSERT_TRUE(::pipe(fds) == 0);
    ::close(fds[0]);
    ::close(fds[1]);
    for (int fd : {-1, fds[0]}) {
      std::string what;
      try {
        pipe_stream p(fd);
      } catch (const std::invalid_argument& e) {
        what = e.what();
      }
      EXPECT_EQ(what, "pipe_stream: fd " + std::to_string(fd) + " is not an open file descriptor");
    }
    co_return;
  }());
}

TEST_P(Pipe, Eof_WriterClosedClosesTheStream_S56) {
  run([]() -> task<void> {
    auto [r, w] = make_pipe();
    co_await w.write("last words");
    w.close();
    EXPECT_TRUE(w.closed());
    EXPECT_EQ(co_await r.read_until_close(), "last words");
    EXPECT_TRUE(r.closed());
    EXPECT_FALSE(r.error());  // a clean EOF
    EXPECT_THROW(co_await r.read_bytes(1), stream_closed_error);
  }());
}

TEST_P(Pipe, Eof_PendingReadThatCannotBeSatisfiedFails_S56) {
  run([]() -> task<void> {
    auto [r, w] = make_pipe();
    bool callback_ran = false;
    r.set_close_callback([&callback_ran] { callback_ran = true; });
    task<std::string> line = r.read_until("\n");
    co_await w.write("no newline");
    w.close();
    try {
      co_await std::move(line);
      ADD_FAILURE() << "read_until completed without its delimiter";
    } catch (const stream_closed_error& e) {
      EXPECT_FALSE(e.code());
    }
    EXPECT_TRUE(r.closed());
    EXPECT_EQ(co_await r.read_until_close(), "no newline");  // the buffer is kept (D1)
    co_await sleep_for(1ms);
    EXPECT_TRUE(callback_ran);
  }());
}

TEST_P(Pipe, Eof_OnlyWhenEveryWriterHasClosed_S56) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  int other_writer = ::fcntl(fds[1], F_DUPFD_CLOEXEC, 0);  // as a child holding the pipe would
  ASSERT_GE(other_writer, 0);
  run([&fds, other_writer]() -> task<void> {
    pipe_stream r(fds[0]);
    pipe_stream w(fds[1]);
    task<std::string> all = r.read_until_close();
    co_await w.write("a");
    w.close();
    co_await sleep_for(20ms);
    EXPECT_FALSE(r.closed()) << "EOF reported while a writer is left";
    EXPECT_EQ(::write(other_writer, "b", 1), 1);
    ::close(other_writer);
    EXPECT_EQ(co_await std::move(all), "ab");
    EXPECT_TRUE(r.closed());
  }());
}

/// Awaits a write that must fail because no reader is left: stream_closed_error{EPIPE}.
task<void> expect_broken_pipe(task<void> write) {
  try {
    co_await std::move(write);
    ADD_FAILURE() << "the write succeeded with no reader";
  } catch (const stream_closed_error& e) {
    EXPECT_EQ(e.code(), std::errc::broken_pipe) << e.what();
  }
}

TEST_P(Pipe, Write_NoReaderLeftFailsWithEpipeAndTheProcessSurvives_S56) {
  const bool blocked_before = sigpipe_blocked();
  run([]() -> task<void> {
    auto [r, w] = make_pipe();
    r.close();
    co_await expect_broken_pipe(w.write("into the void"));
    // Still alive: SIGPIPE did not kill us. The stream is closed with EPIPE (S33).
    EXPECT_TRUE(w.closed());
    EXPECT_EQ(w.error(), std::errc::broken_pipe);
    EXPECT_THROW(co_await w.write("again"), stream_closed_error);  // S32

    // The same with the reader going away while a large write is under way.
    auto [r2, w2] = make_pipe();
    task<void> big = w2.write(pattern(1 << 20));
    EXPECT_EQ((co_await r2.read_bytes(1000)).size(), 1000u);
    r2.close();
    co_await expect_broken_pipe(std::move(big));
  }());
  // The loop restores the thread's signal mask and drops the SIGPIPE it absorbed.
  EXPECT_EQ(sigpipe_blocked(), blocked_before);
  EXPECT_FALSE(sigpipe_pending());
}

TEST_P(Pipe, WriteEnd_CloseCallbackKeepsItOpenUntilAWriteFindsNoReader_S40_S56) {
  // A close callback on the write end used to start the idle EOF watch (a read), which
  // failed at once with EBADF and closed the stream: the next write failed.
  run([]() -> task<void> {
    auto [r, w] = make_pipe();
    int callbacks = 0;
    w.set_close_callback([&callbacks] { ++callbacks; });
    co_await sleep_for(5ms);  // a watch that fails would have closed it by now
    EXPECT_FALSE(w.closed());
    EXPECT_EQ(w.error(), std::error_code());
    co_await w.write("x");
    EXPECT_EQ(co_await r.read_bytes(1), "x");
    EXPECT_EQ(callbacks, 0);
    EXPECT_THROW((void)w.read_bytes(1), std::logic_error);  // the write end cannot be read
    EXPECT_FALSE(w.closed());
    r.close();
    co_await expect_broken_pipe(w.write("into the void"));
    co_await sleep_for(1ms);
    EXPECT_EQ(callbacks, 1);
  }());
}

TEST_P(Pipe, Write_BackpressureLargeWriteCompletesAsTheReaderDrains_S56) {
  run([]() -> task<void> {
    auto [r, w] = make_pipe();
    const std::string data = pattern(8 << 20);  // far more than a pipe holds (64 KiB)
    task<void> written = w.write(data);
    co_await sleep_for(20ms);
    EXPECT_TRUE(w.writing()) << "8 MiB cannot fit in a pipe nobody reads";
    std::string received;
    while (received.size() < data.size()) {
      received += co_await r.read_bytes(data.size() - received.size(), true);
    }
    co_await std::move(written);
    EXPECT_FALSE(w.writing());
    EXPECT_TRUE(received == data) << "the bytes differ";
  }());
}

TEST_P(Pipe, Write_PastMaxWriteBufferSizeThrowsAndQueuesNothing_S56) {
  run([]() -> task<void> {
    stream_options limited;
    limited.max_write_buffer_size = 256 << 10;
    auto [r, w] = make_pipe(limited);
    w.write(pattern(200 << 10));
    EXPECT_THROW(w.write(pattern(100 << 10)), stream_buffer_full_error);
    std::string received = co_await r.read_bytes(200 << 10);
    EXPECT_EQ(received, pattern(200 << 10));
    co_await w.write("");  // flush barrier: everything accepted
    w.close();
    EXPECT_EQ(co_await r.read_until_close(), "");
  }());
}

TEST_P(Pipe, Adopt_RawFdIsMadeNonBlockingAndCloseOnExecAndClosedWithTheStream_S56) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);  // blocking, inheritable
  run([&fds]() -> task<void> {
    pipe_stream r(fds[0]);
    pipe_stream w(fds[1]);
    EXPECT_TRUE(::fcntl(fds[0], F_GETFL) & O_NONBLOCK);
    EXPECT_TRUE(::fcntl(fds[1], F_GETFL) & O_NONBLOCK);
    EXPECT_TRUE(::fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
    EXPECT_TRUE(::fcntl(fds[1], F_GETFD) & FD_CLOEXEC);
    // A read on an empty non-blocking pipe waits in the loop instead of blocking the thread.
    task<std::string> line = r.read_until("\n");
    co_await sleep_for(10ms);
    EXPECT_TRUE(r.reading());
    co_await w.write("ok\n");
    EXPECT_EQ(co_await std::move(line), "ok\n");
    w.close();
    r.close();
    EXPECT_EQ(::fcntl(fds[1], F_GETFD), -1);  // the fds are closed with their streams
    EXPECT_EQ(::fcntl(fds[0], F_GETFD), -1);
  }());
}

TEST_P(Pipe, Destroy_StreamsClosesTheirFds_S56) {
  run([]() -> task<void> {
    int before = open_fd_count();
    {
      auto [r, w] = make_pipe();
      EXPECT_EQ(open_fd_count(), before + 2);
      task<std::string> pending = r.read_until("\n");  // in flight when destroyed
      co_await sleep_for(1ms);
    }
    co_await sleep_for(5ms);  // a cancelled in-flight read may delay the close by a turn
    EXPECT_EQ(open_fd_count(), before);
  }());
}

TEST_P(PipeChunks, ReadUntil_LinesAcrossSmallChunks_S56) {
  run([](stream_options opts) -> task<void> {
    auto [r, w] = make_pipe(opts);
    EXPECT_EQ(r.options().read_chunk_size, opts.read_chunk_size);
    std::vector<std::string> lines;
    std::string all;
    for (int i = 0; i < 200; ++i) {
      lines.push_back("line " + std::to_string(i) +
                      std::string(static_cast<std::size_t>(i % 17), '.') + "\r\n");
      all += lines.back();
    }
    // The writer dribbles the bytes in pieces that do not line up with the lines.
    auto writer = [](pipe_stream& w, std::string all) -> task<void> {
      for (std::size_t at = 0; at < all.size(); at += 13) {
        co_await w.write(std::string_view(all).substr(at, 13));
        if (at % 130 == 0) co_await sleep_for(0ms);
      }
      w.close();
    };
    task<void> writing = corio::start(writer(w, all));
    for (const std::string& line : lines) {
      EXPECT_EQ(co_await r.read_until("\r\n"), line);
    }
    co_await std::move(writing);
    EXPECT_EQ(co_await r.read_until_close(), "");
    EXPECT_TRUE(r.closed());
  }(chunked()));
}

TEST_P(PipeChunks, ReadUntil_DelimiterSplitAcrossChunksAndMaxBytes_S56) {
  run([](stream_options opts) -> task<void> {
    auto [r, w] = make_pipe(opts);
    co_await w.write("abc\r");
    co_await w.write("\ndef");
    EXPECT_EQ(co_await r.read_until("\r\n"), "abc\r\n");
    co_await w.write("ghijklmnop\r\n");
    try {
      co_await r.read_until("\r\n", 8);
      ADD_FAILURE() << "max_bytes was not enforced";
    } catch (const stream_closed_error& e) {
      EXPECT_EQ(e.code(), errc::unsatisfiable_read);
    }
    EXPECT_TRUE(r.closed());
  }(chunked()));
}

CORIO_INSTANTIATE_BACKENDS(Pipe);

INSTANTIATE_TEST_SUITE_P(
    Backends, PipeChunks,
    ::testing::Combine(::testing::Values(corio::backend::io_uring, corio::backend::epoll),
                       ::testing::Values(std::size_t{1}, std::size_t{3}, std::size_t{64 << 10})),
    [](const ::testing::TestParamInfo<PipeChunks::ParamType>& info) {
      return std::string(std::get<0>(info.param) == corio::backend::io_uring ? "io_uring"
                                                                             : "epoll") +
             "_chunk" + std::to_string(std::get<1>(info.param));
    });

}  // namespace
