// Tornado's IOStream example (the "seed" client) in corio: connect, send a request, read the
// head until "\r\n\r\n", read Content-Length bytes, print the body.
// Usage: seed_client HOST PORT
#include <algorithm>
#include <corio/corio.hpp>
#include <cstdio>
#include <cstdlib>

corio::task<void> fetch(std::string host, std::uint16_t port) {
  auto stream = co_await corio::tcp_stream::connect(host, port);
  stream.write("GET / HTTP/1.0\r\nHost: " + host + "\r\n\r\n");
  std::string head = co_await stream.read_until("\r\n\r\n");
  std::size_t content_length = 0;
  std::string_view rest(head);
  while (!rest.empty()) {  // one header line per turn: "Name: value\r\n"
    std::string_view line = rest.substr(0, rest.find("\r\n"));
    rest.remove_prefix(std::min(rest.size(), line.size() + 2));
    auto colon = line.find(':');
    if (colon != line.npos && corio::http::iequals(line.substr(0, colon), "Content-Length")) {
      content_length = std::strtoull(line.data() + colon + 1, nullptr, 10);
    }
  }
  std::string body = co_await stream.read_bytes(content_length);
  std::printf("%s\n", body.c_str());
  stream.close();
}

int main(int argc, char** argv) {
  if (argc < 3) return std::fprintf(stderr, "usage: seed_client HOST PORT\n"), 2;
  corio::event_loop loop;
  loop.run(fetch(argv[1], static_cast<std::uint16_t>(std::atoi(argv[2]))));
}
