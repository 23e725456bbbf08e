// Smoke test: the stream engine over a socket pair and loopback TCP, both backends.
#include <gtest/gtest.h>

#include "corio/corio.hpp"
#include "support/backends.hpp"

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

CORIO_INSTANTIATE_BACKENDS(StreamSmoke);
}  // namespace
