// The low-level operations of corio/io.hpp on both backends, over socketpair(AF_UNIX), loopback
// TCP and pipes: data transfer, EOF, resets, accept/connect, poll, timeout, and cancellation
// (with_timeout and task destruction with the operation in flight, B7).
#include "corio/io.hpp"

#include <gtest/gtest.h>
#include <poll.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "corio/errors.hpp"
#include "corio/loop.hpp"
#include "corio/timeout.hpp"
#include "support/backends.hpp"
#include "support/raw_sockets.hpp"

namespace {

using namespace std::chrono_literals;
using corio::event_loop;
using corio::task;
using corio::testing::fd_pair;
using corio::testing::socket_kind;
using corio::testing::unique_fd;
namespace io = corio::io;
using clock_type = std::chrono::steady_clock;

class IoTest : public corio::testing::backend_test {};
CORIO_INSTANTIATE_BACKENDS(IoTest);

constexpr std::array<socket_kind, 2> all_socket_kinds{socket_kind::unix_stream,
                                                      socket_kind::tcp_loopback};

std::span<const std::byte> as_bytes(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

std::string as_text(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

using corio::testing::ms_since;

/// Sends all of `data` with io::send (a send may be partial).
task<int> send_all(int fd, std::span<const std::byte> data) {
  std::size_t done = 0;
  while (done < data.size()) {
    int n = co_await io::send(fd, data.subspan(done));
    if (n <= 0) co_return n;
    done += static_cast<std::size_t>(n);
  }
  co_return static_cast<int>(done);
}

/// Receives exactly `n` bytes (or until EOF/error) with io::recv.
task<std::string> recv_exactly(int fd, std::size_t n) {
  std::string out;
  std::array<std::byte, 4096> buf{};
  while (out.size() < n) {
    int got = co_await io::recv(fd, std::span(buf).first(std::min(buf.size(), n - out.size())));
    if (got <= 0) break;
    out += as_text(std::span(buf).first(static_cast<std::size_t>(got)));
  }
  co_return out;
}

// ---------------------------------------------------------------------------------------------
// send / recv / sendmsg

TEST_P(IoTest, SendRecv_RoundTripBothDirections) {
  for (socket_kind kind : all_socket_kinds) {
    SCOPED_TRACE(corio::testing::to_string(kind));
    fd_pair p = corio::testing::make_stream_pair(kind);
    auto body = [&]() -> task<void> {
      int sent = co_await io::send(p.first.get(), as_bytes("hello corio"));
      EXPECT_EQ(sent, 11);
      std::array<std::byte, 64> buf{};
      int got = co_await io::recv(p.second.get(), buf);
      EXPECT_EQ(got, 11);
      if (got > 0) {
        EXPECT_EQ(as_text(std::span(buf).first(std::size_t(got))), "hello corio");
      }
      EXPECT_EQ(co_await io::send(p.second.get(), as_bytes("back")), 4);
      EXPECT_EQ(co_await recv_exactly(p.first.get(), 4), "back");
    };
    run(body());
  }
}

TEST_P(IoTest, SendRecv_PendingRecvCompletesWhenDataArrives) {
  for (socket_kind kind : all_socket_kinds) {
    SCOPED_TRACE(corio::testing::to_string(kind));
    fd_pair p = corio::testing::make_stream_pair(kind);
    auto body = [&]() -> task<std::string> {
      event_loop::current().call_later(
          10ms, [&] { EXPECT_EQ(::send(p.first.get(), "late", 4, MSG_NOSIGNAL), 4); });
      std::array<std::byte, 64> buf{};
      int got = co_await io::recv(p.second.get(), buf);  // nothing there yet: it waits
      co_return got > 0 ? as_text(std::span(buf).first(std::size_t(got))) : std::to_string(got);
    };
    EXPECT_EQ(run(body()), "late");
  }
}

// 1 MiB each way at once: partial sends and receives bigger than one provided buffer.
TEST_P(IoTest, SendRecv_OneMebibyteConcurrentlyKeepsEveryByteInOrder) {
  for (socket_kind kind : all_socket_kinds) {
    SCOPED_TRACE(corio::testing::to_string(kind));
    fd_pair p = corio::testing::make_stream_pair(kind);
    std::vector<std::byte> payload(1 << 20);
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = std::byte(i * 7 % 251);
    auto body = [&]() -> task<void> {
      int sent = -1;
      auto sender = [&]() -> task<void> { sent = co_await send_all(p.first.get(), payload); };
      event_loop::current().spawn(sender());
      std::vector<std::byte> received;
      std::vector<std::byte> chunk(100 << 10);  // larger than a provided buffer (32 KiB)
      while (received.size() < payload.size()) {
        int n = co_await io::recv(p.second.get(), chunk);
        if (n <= 0) {
          ADD_FAILURE() << "recv returned " << n;
          co_return;
        }
        received.insert(received.end(), chunk.begin(), chunk.begin() + n);
      }
      while (sent < 0) co_await corio::sleep_for(1ms);
      EXPECT_EQ(sent, static_cast<int>(payload.size()));
      EXPECT_TRUE(received == payload) << "the bytes differ";
    };
    run(body());
  }
}

TEST_P(IoTest, Sendmsg_GathersThreePiecesInOneSend) {
  for (socket_kind kind : all_socket_kinds) {
    SCOPED_TRACE(corio::testing::to_string(kind));
    fd_pair p = corio::testing::make_stream_pair(kind);
    auto body = [&]() -> task<std::string> {
      std::string a = "GET / ", b = "HTTP/1.1\r\n", c = "\r\n";
      std::array<iovec, 3> pieces{iovec{a.data(), a.size()}, iovec{b.data(), b.size()},
                                  iovec{c.data(), c.size()}};
      int sent = co_await io::sendmsg(p.first.get(), pieces);
      EXPECT_EQ(sent, 18);
      co_return co_await recv_exactly(p.second.get(), 18);
    };
    EXPECT_EQ(run(body()), "GET / HTTP/1.1\r\n\r\n");
    auto stats_body = [&]() -> task<std::uint64_t> {
      std::array<iovec, 1> one{iovec{const_cast<char*>("z"), 1}};
      co_await io::sendmsg(p.first.get(), one);
      co_return event_loop::current()
          .stats()
          .ops_by_kind[static_cast<std::size_t>(corio::detail::op_kind::sendmsg)];
    };
    EXPECT_EQ(run(stats_body()), 1U);
  }
}

TEST_P(IoTest, Send_AfterPeerClosedIsEpipeWithoutSignal) {
  fd_pair p = corio::testing::make_socketpair();
  p.second.reset();
  auto body = [&]() -> task<int> { co_return co_await io::send(p.first.get(), as_bytes("x")); };
  EXPECT_EQ(run(body()), -EPIPE);  // MSG_NOSIGNAL: the process is still alive
}

// ---------------------------------------------------------------------------------------------
// read / write over a pipe

TEST_P(IoTest, ReadWrite_OverANonBlockingPipe) {
  fd_pair pipe = corio::testing::make_pipe();
  int r = pipe.first.get();
  int w = pipe.second.get();
  auto body = [&]() -> task<void> {
    EXPECT_EQ(co_await io::write(w, as_bytes("through the pipe")), 16);
    std::array<std::byte, 64> buf{};
    int n = co_await io::read(r, buf);
    EXPECT_EQ(n, 16);
    if (n > 0) {
      EXPECT_EQ(as_text(std::span(buf).first(std::size_t(n))), "through the pipe");
    }
    // A read on an empty O_NONBLOCK pipe waits (io_uring: -EAGAIN, then poll and retry).
    event_loop::current().call_later(10ms, [&] { EXPECT_EQ(::write(w, "later", 5), 5); });
    n = co_await io::read(r, buf);
    EXPECT_EQ(n, 5);
    if (n > 0) {
      EXPECT_EQ(as_text(std::span(buf).first(std::size_t(n))), "later");
    }
  };
  run(body());
  // EOF: the write end is closed.
  pipe.second.reset();
  auto eof = [&]() -> task<int> {
    std::array<std::byte, 8> buf{};
    co_return co_await io::read(r, buf);
  };
  EXPECT_EQ(run(eof()), 0);
}

TEST_P(IoTest, Write_PendingOnAFullPipeCompletesWhenTheReaderDrains) {
  fd_pair pipe = corio::testing::make_pipe();
  int r = pipe.first.get();
  int w = pipe.second.get();
  // Fill the pipe.
  std::vector<char> chunk(64 << 10, 'a');
  std::size_t filled = 0;
  for (ssize_t n; (n = ::write(w, chunk.data(), chunk.size())) > 0;) filled += std::size_t(n);
  ASSERT_GT(filled, 0U);
  auto body = [&]() -> task<int> {
    event_loop::current().call_later(10ms, [&] {
      std::vector<char> sink(filled);
      std::size_t got = 0;
      while (got < filled) {
        ssize_t n = ::read(r, sink.data(), sink.size());
        if (n <= 0) break;
        got += std::size_t(n);
      }
    });
    co_return co_await io::write(w, as_bytes("tail"));
  };
  EXPECT_EQ(run(body()), 4);
}

// ---------------------------------------------------------------------------------------------
// EOF and resets

TEST_P(IoTest, Recv_ReturnsZeroAtEofAfterPeerClose) {
  for (socket_kind kind : all_socket_kinds) {
    SCOPED_TRACE(corio::testing::to_string(kind));
    fd_pair p = corio::testing::make_stream_pair(kind);
    auto body = [&]() -> task<std::pair<int, int>> {
      // Pending when the FIN arrives.
      event_loop::current().call_later(10ms, [&] { p.first.reset(); });
      std::array<std::byte, 16> buf{};
      int pending = co_await io::recv(p.second.get(), buf);
      // And once more, with the EOF already known.
      int again = co_await io::recv(p.second.get(), buf);
      co_return std::pair{pending, again};
    };
    EXPECT_EQ(run(body()), (std::pair{0, 0}));
  }
}

TEST_P(IoTest, Recv_DataThenEof) {
  fd_pair p = corio::testing::make_tcp_pair();
  ASSERT_EQ(::send(p.first.get(), "last words", 10, MSG_NOSIGNAL), 10);
  ::shutdown(p.first.get(), SHUT_WR);
  auto body = [&]() -> task<std::string> {
    std::string all = co_await recv_exactly(p.second.get(), 10);
    std::array<std::byte, 16> buf{};
    int eof = co_await io::recv(p.second.get(), buf);
    co_return all + "|" + std::to_string(eof);
  };
  EXPECT_EQ(run(body()), "last words|0");
}

// B1 at the io level: the peer closes with SO_LINGER {1, 0}, so it sends RST.
TEST_P(IoTest, Recv_PeerResetSurfacesAsEconnreset_Tcp) {
  fd_pair p = corio::testing::make_tcp_pair();
  // The server got data it never reads, then resets.
  ASSERT_EQ(::send(p.first.get(), "unread", 6, MSG_NOSIGNAL), 6);
  corio::testing::set_linger_reset(p.second.get());
  auto body = [&]() -> task<int> {
    event_loop::current().call_later(10ms, [&] { p.second.reset(); });
    std::array<std::byte, 16> buf{};
    co_return co_await io::recv(p.first.get(), buf);  // pending when the RST arrives
  };
  EXPECT_EQ(run(body()), -ECONNRESET);
}

TEST_P(IoTest, Recv_PeerClosedWithUnreadDataSurfacesAsEconnreset_Unix) {
  fd_pair p = corio::testing::make_socketpair();
  ASSERT_EQ(::send(p.first.get(), "unread", 6, MSG_NOSIGNAL), 6);
  auto body = [&]() -> task<int> {
    event_loop::current().call_later(10ms, [&] { p.second.reset(); });
    std::array<std::byte, 16> buf{};
    co_return co_await io::recv(p.first.get(), buf);
  };
  EXPECT_EQ(run(body()), -ECONNRESET);
}

TEST_P(IoTest, Send_AfterPeerResetFails) {
  fd_pair p = corio::testing::make_tcp_pair();
  corio::testing::set_linger_reset(p.second.get());
  p.second.reset();
  std::this_thread::sleep_for(10ms);  // let the RST arrive
  auto body = [&]() -> task<int> { co_return co_await io::send(p.first.get(), as_bytes("x")); };
  int r = run(body());
  EXPECT_TRUE(r == -ECONNRESET || r == -EPIPE) << r;
}

// ---------------------------------------------------------------------------------------------
// accept / connect

TEST_P(IoTest, AcceptConnect_OnLoopback) {
  unique_fd listener = corio::testing::make_tcp_listener();
  sockaddr_in address =
      corio::testing::loopback_address(corio::testing::local_port(listener.get()));
  auto body = [&]() -> task<std::string> {
    int accepted = -1;
    auto acceptor = [&]() -> task<void> { accepted = co_await io::accept(listener.get()); };
    event_loop::current().spawn(acceptor());  // pending before anyone connects
    co_await corio::sleep_for(2ms);
    unique_fd client = corio::testing::make_tcp_socket();
    int rc = co_await io::connect(client.get(), reinterpret_cast<const sockaddr*>(&address),
                                  sizeof address);
    EXPECT_EQ(rc, 0);
    while (accepted == -1) co_await corio::sleep_for(1ms);
    EXPECT_GE(accepted, 0);
    if (accepted < 0) co_return "accept failed: " + std::to_string(accepted);
    unique_fd server(accepted);
    // The accepted socket is non-blocking and close-on-exec.
    EXPECT_NE(::fcntl(server.get(), F_GETFL) & O_NONBLOCK, 0);
    EXPECT_NE(::fcntl(server.get(), F_GETFD) & FD_CLOEXEC, 0);
    EXPECT_EQ(co_await io::send(client.get(), as_bytes("ping")), 4);
    std::string got = co_await recv_exactly(server.get(), 4);
    EXPECT_EQ(co_await io::send(server.get(), as_bytes("pong")), 4);
    got += co_await recv_exactly(client.get(), 4);
    co_return got;
  };
  EXPECT_EQ(run(body()), "pingpong");
}

TEST_P(IoTest, Accept_ConnectionAlreadyWaiting) {
  unique_fd listener = corio::testing::make_tcp_listener();
  sockaddr_in address =
      corio::testing::loopback_address(corio::testing::local_port(listener.get()));
  unique_fd client = corio::testing::make_tcp_socket();
  ::connect(client.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address);
  ASSERT_TRUE(corio::testing::wait_ready(listener.get(), POLLIN));
  auto body = [&]() -> task<int> { co_return co_await io::accept(listener.get()); };
  int fd = run(body());
  ASSERT_GE(fd, 0);
  ::close(fd);
}

// B12: connect to a port nobody listens on.
TEST_P(IoTest, Connect_ToAClosedPortIsEconnrefused) {
  // Bound but not listening: the port stays ours, and the kernel refuses connections to it.
  unique_fd reserved = corio::testing::make_tcp_listener(/*listen=*/false);
  sockaddr_in address =
      corio::testing::loopback_address(corio::testing::local_port(reserved.get()));
  int fds_before = corio::testing::open_fd_count();
  auto body = [&]() -> task<int> {
    unique_fd client = corio::testing::make_tcp_socket();
    co_return co_await io::connect(client.get(), reinterpret_cast<const sockaddr*>(&address),
                                   sizeof address);
  };
  EXPECT_EQ(run(body()), -ECONNREFUSED);
  EXPECT_EQ(corio::testing::open_fd_count(), fds_before);
}

// An fd closed through the loop (close_fd_after) may come back with the same number: the
// epoll backend keeps one registration per fd for its lifetime, which it must forget on close.
TEST_P(IoTest, CloseFdAfter_FdNumberReusedOnTheSameLoopStillWorks) {
  auto body = []() -> task<std::string> {
    event_loop& loop = event_loop::current();
    std::string got;
    for (int round = 0; round < 3; ++round) {
      int sv[2];
      EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
      loop.call_later(2ms, [fd = sv[0]] { EXPECT_EQ(::send(fd, "r", 1, MSG_NOSIGNAL), 1); });
      std::array<std::byte, 4> buf{};
      int n = co_await io::recv(sv[1], buf);  // waits: on epoll this registers sv[1]
      if (n == 1) got += static_cast<char>(buf[0]);
      loop.close_fd_after(sv[0], {});
      loop.close_fd_after(sv[1], {});
    }
    co_return got;
  };
  EXPECT_EQ(run(body(), 5s), "rrr");
}

// ---------------------------------------------------------------------------------------------
// poll and timeout

TEST_P(IoTest, Poll_WaitsForPollin) {
  for (socket_kind kind : all_socket_kinds) {
    SCOPED_TRACE(corio::testing::to_string(kind));
    fd_pair p = corio::testing::make_stream_pair(kind);
    auto body = [&]() -> task<void> {
      // Writable at once.
      int out = co_await io::poll(p.first.get(), POLLOUT);
      EXPECT_GT(out, 0);
      EXPECT_NE(out & POLLOUT, 0);
      // Readable only once data arrives.
      auto start = clock_type::now();
      event_loop::current().call_later(
          10ms, [&] { EXPECT_EQ(::send(p.first.get(), "!", 1, MSG_NOSIGNAL), 1); });
      int in = co_await io::poll(p.second.get(), POLLIN);
      EXPECT_GE(ms_since(start), 9.0);
      EXPECT_GT(in, 0);
      EXPECT_NE(in & POLLIN, 0);
      // poll does not consume: the byte is still there.
      EXPECT_EQ(co_await recv_exactly(p.second.get(), 1), "!");
    };
    run(body());
  }
}

TEST_P(IoTest, Poll_ForInputOrOutputCompletesWhenOnlyWritabilityArrives) {
  // A poll for POLLIN|POLLOUT on a socket whose send buffer is full and that receives
  // nothing: only the peer draining it (an output edge) can complete it. epoll used to
  // retry such a poll on input edges only.
  fd_pair p = corio::testing::make_stream_pair(socket_kind::unix_stream);
  std::string chunk(64 << 10, 'x');
  while (::send(p.first.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL | MSG_DONTWAIT) > 0) {
  }
  auto body = [&]() -> task<int> {
    event_loop::current().call_later(20ms, [&] {
      while (::recv(p.second.get(), chunk.data(), chunk.size(), MSG_DONTWAIT) > 0) {
      }
    });
    co_return co_await corio::with_timeout(
        5s, [&]() -> task<int> { co_return co_await io::poll(p.first.get(), POLLIN | POLLOUT); }());
  };
  int events = run(body());
  EXPECT_NE(events & POLLOUT, 0) << events;
  EXPECT_EQ(events & POLLIN, 0) << events;
}

TEST_P(IoTest, Recv_IntoAnEmptySpanCompletesWithZeroAndTakesNothing) {
  // io_uring used to hand the kernel a zero-length receive with a provided buffer, which
  // then took a whole buffer of data that had nowhere to go: the loop spun forever.
  fd_pair p = corio::testing::make_stream_pair(socket_kind::unix_stream);
  ASSERT_EQ(::send(p.first.get(), "hello", 5, MSG_NOSIGNAL), 5);
  auto body = [&]() -> task<void> {
    std::span<std::byte> nothing;
    EXPECT_EQ(co_await io::recv(p.second.get(), nothing), 0);
    EXPECT_EQ(co_await io::read(p.second.get(), nothing), 0);
    EXPECT_EQ(co_await recv_exactly(p.second.get(), 5), "hello");
  };
  run(body(), 5s);
}

TEST_P(IoTest, Timeout_CompletesWithEtimeAfterTheDuration) {
  auto body = []() -> task<std::pair<int, double>> {
    auto start = clock_type::now();
    int r = co_await io::timeout(30ms);
    co_return std::pair{r, ms_since(start)};
  };
  auto [result, elapsed] = run(body());
  EXPECT_EQ(result, -ETIME);
  EXPECT_GE(elapsed, 29.5);
  EXPECT_LT(elapsed, 2000.0);
}

TEST_P(IoTest, Timeout_ManyConcurrentTimeoutsAllComplete) {
  auto body = []() -> task<int> {
    int done = 0;
    auto one = [&](int ms) -> task<void> {
      if (co_await io::timeout(std::chrono::milliseconds(ms)) == -ETIME) ++done;
    };
    for (int i = 0; i < 100; ++i) event_loop::current().spawn(one(i % 10));
    while (done < 100) co_await corio::sleep_for(1ms);
    co_return done;
  };
  EXPECT_EQ(run(body()), 100);
}

// ---------------------------------------------------------------------------------------------
// Cancellation

TEST_P(IoTest, Recv_CancelledByWithTimeout_SocketStaysUsable) {
  for (socket_kind kind : all_socket_kinds) {
    SCOPED_TRACE(corio::testing::to_string(kind));
    fd_pair p = corio::testing::make_stream_pair(kind);
    auto body = [&]() -> task<std::string> {
      auto receive = [&]() -> task<int> {
        std::array<std::byte, 64> buf{};
        co_return co_await io::recv(p.second.get(), buf);
      };
      bool timed_out = false;
      try {
        co_await corio::with_timeout(20ms, receive());
      } catch (const corio::timeout_error&) {
        timed_out = true;
      }
      EXPECT_TRUE(timed_out);
      // Data sent after the timeout reaches the next recv.
      EXPECT_EQ(co_await io::send(p.first.get(), as_bytes("after")), 5);
      co_return co_await recv_exactly(p.second.get(), 5);
    };
    EXPECT_EQ(run(body()), "after");
  }
}

// B7: the coroutine awaiting recv is destroyed (with_timeout), then data arrives at once.
TEST_P(IoTest, Recv_TaskDestroyedByTimeoutThenDataArrives_NoUseAfterFree_B7) {
  for (socket_kind kind : all_socket_kinds) {
    SCOPED_TRACE(corio::testing::to_string(kind));
    fd_pair p = corio::testing::make_stream_pair(kind);
    auto alive = std::make_shared<int>(0);
    auto body = [&]() -> task<void> {
      auto receive = [&](std::shared_ptr<int>) -> task<int> {
        std::array<std::byte, 4096> frame_buffer{};  // dies with the frame
        co_return co_await io::recv(p.second.get(), frame_buffer);
      };
      for (int round = 0; round < 20; ++round) {
        try {
          co_await corio::with_timeout(1ms, receive(alive));
        } catch (const corio::timeout_error&) {
        }
        // Raw send: arrives while the cancel may still be on its way to the kernel.
        std::vector<char> junk(3000, 'j');
        EXPECT_GT(::send(p.first.get(), junk.data(), junk.size(), MSG_NOSIGNAL), 0);
        co_await corio::sleep_for(1ms);
        corio::testing::drain(p.second.get(), 0);
      }
      EXPECT_EQ(alive.use_count(), 1);
    };
    run(body());
  }
}

// B7: destroyed with the loop, then data arrives.
TEST_P(IoTest, Recv_TaskDestroyedWithTheLoopThenDataArrives_NoUseAfterFree_B7) {
  fd_pair p = corio::testing::make_socketpair();
  auto alive = std::make_shared<int>(0);
  {
    event_loop loop(options());
    auto receive = [&](std::shared_ptr<int>) -> task<void> {
      std::array<std::byte, 4096> frame_buffer{};
      int n = co_await io::recv(p.second.get(), frame_buffer);
      ADD_FAILURE() << "recv completed: " << n;
    };
    for (int i = 0; i < 8; ++i) loop.spawn(receive(alive));
    loop.run(corio::with_timeout(5s, corio::sleep_for(5ms)));
    EXPECT_EQ(alive.use_count(), 9);
  }
  EXPECT_EQ(alive.use_count(), 1);
  ASSERT_EQ(::send(p.first.get(), "data", 4, MSG_NOSIGNAL), 4);
  std::this_thread::sleep_for(5ms);
  char buf[8];
  EXPECT_EQ(::recv(p.second.get(), buf, sizeof buf, MSG_DONTWAIT), 4)
      << "a cancelled recv consumed data after its loop was destroyed";
}

// A send that cannot complete (the peer does not read) is cancelled synchronously when its
// task is destroyed: the kernel must not read the 8 MiB buffer after it is freed.
TEST_P(IoTest, Send_EightMebibytesToAStalledPeerCancelledByWithTimeout) {
  for (socket_kind kind : all_socket_kinds) {
    SCOPED_TRACE(corio::testing::to_string(kind));
    fd_pair p = corio::testing::make_stream_pair(kind);
    std::size_t prefill = corio::testing::fill_send_buffer(p.first.get());
    std::size_t sent_by_task = 0;
    auto alive = std::make_shared<int>(0);
    auto body = [&]() -> task<bool> {
      auto sender = [&](std::shared_ptr<int>) -> task<void> {
        std::vector<std::byte> payload(8 << 20, std::byte{'p'});
        std::size_t done = 0;
        while (done < payload.size()) {
          int n = co_await io::send(p.first.get(), std::span(payload).subspan(done));
          if (n <= 0) {
            ADD_FAILURE() << "send failed: " << n;
            co_return;
          }
          done += static_cast<std::size_t>(n);
          sent_by_task = done;
        }
        ADD_FAILURE() << "8 MiB were sent to a peer that does not read";
      };
      try {
        co_await corio::with_timeout(50ms, sender(alive));
      } catch (const corio::timeout_error&) {
        co_return true;
      }
      co_return false;
    };
    EXPECT_TRUE(run(body()));
    EXPECT_EQ(alive.use_count(), 1);
    // What the peer finally gets: the prefill, then only 'p' bytes.
    std::vector<std::byte> got = corio::testing::drain(p.second.get());
    ASSERT_GE(got.size(), prefill + sent_by_task);
    EXPECT_LE(got.size(), prefill + (8u << 20));
    std::size_t not_p = 0;
    for (std::size_t i = prefill; i < got.size(); ++i) not_p += got[i] != std::byte{'p'};
    EXPECT_EQ(not_p, 0U);
  }
}

// The same, with the send still pending when its loop is destroyed.
TEST_P(IoTest, Send_StalledEightMebibytesPendingWhenTheLoopIsDestroyed) {
  fd_pair p = corio::testing::make_socketpair();
  corio::testing::fill_send_buffer(p.first.get());
  auto alive = std::make_shared<int>(0);
  {
    event_loop loop(options());
    auto sender = [&](std::shared_ptr<int>) -> task<void> {
      std::vector<std::byte> payload(8 << 20, std::byte{'p'});
      int n = co_await io::send(p.first.get(), payload);
      ADD_FAILURE() << "send completed: " << n;
    };
    loop.spawn(sender(alive));
    loop.run(corio::with_timeout(5s, corio::sleep_for(10ms)));
  }
  EXPECT_EQ(alive.use_count(), 1);
  corio::testing::drain(p.second.get());
}

}  // namespace
