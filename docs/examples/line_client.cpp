// A line client: the README's client example. Usage: line_client PORT [LINE...]
#include <corio/corio.hpp>
#include <cstdio>
#include <cstdlib>

corio::task<int> talk(std::uint16_t port, int argc, char** argv) {
  auto stream =
      co_await corio::tcp_stream::connect("127.0.0.1", port, {.timeout = std::chrono::seconds(5)});
  for (int i = 2; i < argc; ++i) {
    stream.write(std::string(argv[i]) + "\r\n");
    std::string echoed = co_await stream.read_until("\r\n");
    std::printf("%s", echoed.c_str());
  }
  co_return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) return std::fprintf(stderr, "usage: line_client PORT [LINE...]\n"), 2;
  corio::event_loop loop;
  return loop.run(talk(static_cast<std::uint16_t>(std::atoi(argv[1])), argc, argv));
}
