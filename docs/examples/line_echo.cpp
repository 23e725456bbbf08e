// A line-echo server: the README's example. Run it, then: printf 'hi\r\n' | nc 127.0.0.1 7000
#include <corio/corio.hpp>
#include <cstdio>

corio::task<void> serve(corio::tcp_stream client) {
  try {
    for (;;) {
      std::string line = co_await client.read_until("\r\n", 64 * 1024);
      client.write(std::move(line));  // writes of one loop turn leave in one send
    }
  } catch (const corio::stream_closed_error&) {  // peer went away, or the line was too long
  }
}

corio::task<void> accept_loop(corio::tcp_listener& listener) {
  for (;;) corio::event_loop::current().spawn(serve(co_await listener.accept()));
}

int main(int argc, char** argv) {
  corio::event_loop loop;  // io_uring, or epoll where io_uring is unavailable
  auto listener = corio::tcp_listener::bind("127.0.0.1", argc > 1 ? std::atoi(argv[1]) : 7000);
  std::printf("listening on %s\n", listener.local_endpoint().to_string().c_str());
  std::fflush(stdout);
  loop.run(accept_loop(listener));
}
