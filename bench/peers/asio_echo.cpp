// asio_echo: the idiomatic Asio (standalone, C++20 coroutines) echo server, for comparison.
//
//   peer_asio_echo --port N [--mode raw|line]
//
// raw: async_read_some, then async_write of what arrived. line: async_read_until "\r\n", then
// async_write of that line, awaited before the next read: the way most Asio code is written,
// so every pipelined line costs its own send. One thread, one io_context.
// Built twice: peer_asio_echo (Asio's default reactor, epoll) and peer_asio_uring_echo
// (-DASIO_HAS_IO_URING -DASIO_DISABLE_EPOLL, linked with liburing: every socket operation goes
// through io_uring).
// Prints "listening on 127.0.0.1:N" when ready. Exits on SIGINT/SIGTERM (default action).
#include <asio.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;

namespace {

awaitable<void> echo_raw(tcp::socket socket) {
  char data[65536];
  try {
    for (;;) {
      std::size_t n = co_await socket.async_read_some(asio::buffer(data), use_awaitable);
      co_await asio::async_write(socket, asio::buffer(data, n), use_awaitable);
    }
  } catch (const std::exception&) {
  }
}

awaitable<void> echo_lines(tcp::socket socket) {
  std::string buffer;
  try {
    for (;;) {
      std::size_t n = co_await asio::async_read_until(socket, asio::dynamic_buffer(buffer), "\r\n",
                                                      use_awaitable);
      co_await asio::async_write(socket, asio::buffer(buffer.data(), n), use_awaitable);
      buffer.erase(0, n);
    }
  } catch (const std::exception&) {
  }
}

awaitable<void> listen(tcp::acceptor& acceptor, bool line) {
  for (;;) {
    tcp::socket socket = co_await acceptor.async_accept(use_awaitable);
    socket.set_option(tcp::no_delay(true));
    auto executor = socket.get_executor();
    if (line) {
      asio::co_spawn(executor, echo_lines(std::move(socket)), asio::detached);
    } else {
      asio::co_spawn(executor, echo_raw(std::move(socket)), asio::detached);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  unsigned short port = 0;
  bool line = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--port") && i + 1 < argc) {
      port = static_cast<unsigned short>(std::atoi(argv[++i]));
    } else if (!std::strcmp(argv[i], "--mode") && i + 1 < argc) {
      line = !std::strcmp(argv[++i], "line");
    } else {
      std::fprintf(stderr, "usage: %s --port N [--mode raw|line]\n", argv[0]);
      return 2;
    }
  }
  asio::io_context context(1);
  tcp::acceptor acceptor(context);
  tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port);
  acceptor.open(endpoint.protocol());
  acceptor.set_option(tcp::acceptor::reuse_address(true));
  acceptor.bind(endpoint);
  acceptor.listen(4096);
  std::printf("listening on 127.0.0.1:%u\n", acceptor.local_endpoint().port());
  std::fflush(stdout);
  asio::co_spawn(context, listen(acceptor, line), asio::detached);
  context.run();
}
