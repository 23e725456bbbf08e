// Smoke test: the stream engine over a socket pair and loopback TCP, both backends.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "corio/corio.hpp"
#include "support/backends.hpp"
#include "support/raw_sockets.hpp"

using namespace corio;

namespace {
class StreamSmoke : public corio::testing::backend_test {};

TEST_P(StreamSmoke, ReadUntilOverSocketPair) {
  run([]() -> task<void> {
    auto [a, b] = stream_pair();
    a.write("hello\r\nworld\r\n");
    EXPECT_EQ(co_await b.read_until("\r\n"), "hello\r\n");
    EXPECT_EQ(co_await b.read_until("\r\n"), "world\r\n");
    a.close();
    EXPECT_EQ(co_await b.read_until_close(), "");
    EXPECT_TRUE(b.closed());
  }());
}

TEST_P(StreamSmoke, EchoOverTcp) {
  run([]() -> task<void> {
    auto listener = tcp_listener::bind("127.0.0.1", 0);
    auto client_task = tcp_stream::connect("127.0.0.1", listener.port());
    auto server = co_await listener.accept();
    auto client = co_await std::move(client_task);
    co_await client.write("ping\n");
    auto line = co_await server.read_until("\n");
    co_await server.write(line);
    EXPECT_EQ(co_await client.read_bytes(5), "ping\n");
    EXPECT_EQ(server.remote_endpoint().address, "127.0.0.1");
  }());
}

// A burst of connections already in the backlog is taken without a loop turn per accept:
// after one accept finds a connection, the next ones try accept4() at once (until EAGAIN, or
// every 64th, which yields a turn). Without that, one accept loop takes one connection per
// turn and a burst waits behind every other connection's work.
TEST_P(StreamSmoke, AcceptBurst_TakesQueuedConnectionsWithoutATurnEach) {
  constexpr int kClients = 200;
  auto listener = tcp_listener::bind("127.0.0.1", 0);
  std::vector<corio::testing::unique_fd> clients;
  for (int i = 0; i < kClients; ++i) {
    auto fd = corio::testing::make_tcp_socket();
    sockaddr_in to = corio::testing::loopback_address(listener.port());
    int rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof to);
    ASSERT_TRUE(rc == 0 || errno == EINPROGRESS) << std::strerror(errno);
    ASSERT_TRUE(corio::testing::wait_ready(fd.get(), POLLOUT));
    std::string id = std::to_string(1000 + i);  // four bytes each
    ASSERT_EQ(::send(fd.get(), id.data(), id.size(), MSG_NOSIGNAL), 4);
    clients.push_back(std::move(fd));
  }
  run([&]() -> task<void> {
    std::vector<tcp_stream> accepted;
    std::uint64_t turns_before = event_loop::current().stats().iterations;
    for (int i = 0; i < kClients; ++i) accepted.push_back(co_await listener.accept());
    std::uint64_t turns = event_loop::current().stats().iterations - turns_before;
    EXPECT_LT(turns, 20u) << "one accept loop needed " << turns << " loop turns for a burst of "
                          << kClients << " queued connections";
    // Every connection arrives once, and the streams taken directly work like the others.
    std::vector<bool> seen(kClients, false);
    for (auto& stream : accepted) {
      int id = std::stoi(co_await stream.read_bytes(4)) - 1000;
      EXPECT_TRUE(id >= 0 && id < kClients && !seen[id]) << id;
      if (id >= 0 && id < kClients) seen[id] = true;
    }
    EXPECT_EQ(std::count(seen.begin(), seen.end(), true), kClients);
  }());
}

CORIO_INSTANTIATE_BACKENDS(StreamSmoke);
}  // namespace
