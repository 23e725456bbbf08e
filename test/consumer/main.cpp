// Smallest downstream program: proves headers, library and link deps (liburing, OpenSSL,
// PCRE2) resolve, and that a loop runs a stream round trip on the default backend.
#include <corio/corio.hpp>
#include <cstdio>

corio::task<std::string> round_trip() {
  auto [a, b] = corio::stream_pair();
  a.write("ping\r\n");
  co_return co_await b.read_until_regex("\r?\n");
}

int main() {
  corio::event_loop loop;
  std::string line = loop.run(round_trip());
  std::printf("corio %s (major %d) on %s: %s", corio::version_string, corio::version_major(),
              corio::to_string(loop.backend()), line.c_str());
  return line == "ping\r\n" ? 0 : 1;
}
