// An HTTP/1.1 hello-world server: `GET /` answers "Hello, World!".
// Usage: http_hello [--backend io_uring|epoll] [--port N] [--stats-file PATH]
// (also built as corio_http_hello). SIGINT or SIGTERM shuts it down gracefully (a second one
// closes the connections still open at once); it then prints the loop's counters and, with
// --stats-file, writes them to PATH as "name value" lines (bench/table.py reads them to
// compute system calls per request).
#include <signal.h>

#include <chrono>
#include <corio/corio.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

corio::task<corio::http::response> hello(corio::http::request& req) {
  if (req.path() != "/") co_return corio::http::response::text(404, "not found\n");
  co_return corio::http::response::text(200, "Hello, World!");
}

// Waits for a stop signal, then shuts down gracefully: no new connections, idle ones closed,
// requests in progress finished (those still running after the default grace period of 10 s
// are closed). A second signal closes them at once.
corio::task<void> shutdown_on_signal(corio::http::server& server, corio::signal_set& stop) {
  co_await stop.wait();
  server.shutdown();
  co_await stop.wait();
  server.shutdown(std::chrono::seconds(0));
}

int main(int argc, char** argv) {
  corio::loop_options options;
  std::uint16_t port = 8080;
  std::string stats_file;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--backend") == 0) options.backend = corio::parse_backend(argv[i + 1]);
    if (std::strcmp(argv[i], "--port") == 0)
      port = static_cast<std::uint16_t>(std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--stats-file") == 0) stats_file = argv[i + 1];
  }
  // Caught from here on, before "listening on" is printed: a signal sent as soon as it shows
  // is waited for, not fatal. (Destroyed after the loop, the defaults come back.)
  corio::signal_set stop{SIGINT, SIGTERM};

  corio::event_loop loop(options);
  auto listener = corio::tcp_listener::bind("127.0.0.1", port);
  corio::http::server server(hello);
  std::printf("listening on %s\n", listener.local_endpoint().to_string().c_str());
  std::fflush(stdout);
  loop.spawn(shutdown_on_signal(server, stop));
  loop.run(server.serve(listener));

  corio::loop_stats stats = loop.stats();
  auto syscalls = static_cast<unsigned long long>(stats.syscalls);
  auto requests = static_cast<unsigned long long>(server.requests_served());
  std::printf("stats: syscalls=%llu requests=%llu\n", syscalls, requests);
  if (std::FILE* f = stats_file.empty() ? nullptr : std::fopen(stats_file.c_str(), "w")) {
    std::fprintf(f, "syscalls %llu\nrequests %llu\n", syscalls, requests);
    std::fclose(f);
  }
}
