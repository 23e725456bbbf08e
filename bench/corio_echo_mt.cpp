// corio_echo_mt: corio_echo's raw and line echo on N event loops (thread-per-core).
//
//   corio_echo_mt [--backend io_uring|epoll] [--port N] [--mode raw|line] [--loops N]
//                 [--stats-file PATH]
//
// Each loop runs on its own thread, pinned to its own CPU by corio::run_per_core, with its
// own SO_REUSEPORT listener on the same port: the kernel spreads connections over the loops
// and nothing is shared on the hot path. bench/table.py compares 1 loop with 2. Prints
// "listening on 127.0.0.1:N" when every loop listens; SIGINT/SIGTERM stops all loops, and the
// summed loop counters are written to --stats-file as "name value" lines (as corio_echo does).
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "corio/corio.hpp"

using namespace std::chrono_literals;

namespace {

struct server_options {
  corio::backend backend = corio::backend::io_uring;
  std::uint16_t port = 7000;
  bool line = false;
  unsigned loops = 1;
  std::string stats_file;
};

corio::task<void> echo(corio::tcp_stream client, bool line) {
  try {
    for (;;) {
      if (line) {
        client.write(co_await client.read_until("\r\n"));
      } else {
        client.write(co_await client.read_bytes(65536, /*partial=*/true));
      }
    }
  } catch (const corio::stream_closed_error&) {
  }
}

corio::task<void> accept_loop(corio::tcp_listener listener, bool line) {
  for (;;) {
    corio::tcp_stream client = co_await listener.accept();
    client.set_nodelay(true);
    corio::event_loop::current().spawn(echo(std::move(client), line));
  }
}

server_options parse(int argc, char** argv) {
  server_options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (i + 1 >= argc) throw std::invalid_argument(std::string(arg) + " needs a value");
    std::string value = argv[++i];
    if (arg == "--backend") {
      o.backend = corio::parse_backend(value);
    } else if (arg == "--port") {
      o.port = static_cast<std::uint16_t>(std::stoi(value));
    } else if (arg == "--mode") {
      if (value != "raw" && value != "line") throw std::invalid_argument("--mode: raw or line");
      o.line = value == "line";
    } else if (arg == "--loops") {
      o.loops = static_cast<unsigned>(std::stoul(value));
    } else if (arg == "--stats-file") {
      o.stats_file = value;
    } else {
      throw std::invalid_argument("unknown argument " + std::string(arg));
    }
  }
  if (o.loops == 0) throw std::invalid_argument("--loops must be at least 1");
  if (o.port == 0) throw std::invalid_argument("--port must name a port (the loops share it)");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  server_options options;
  try {
    options = parse(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr,
                 "corio_echo_mt: %s\nusage: corio_echo_mt [--backend io_uring|epoll] [--port N] "
                 "[--mode raw|line] [--loops N] [--stats-file PATH]\n",
                 e.what());
    return 2;
  }
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigprocmask(SIG_BLOCK, &stop_signals, nullptr);  // before the threads: they inherit it
  int signal_fd = ::signalfd(-1, &stop_signals, SFD_NONBLOCK | SFD_CLOEXEC);

  std::atomic<unsigned> listening{0};
  std::atomic<bool> stopping{false};
  std::vector<corio::loop_stats> stats(options.loops);
  try {
    corio::run_per_core(
        options.loops,
        [&](corio::core_context& core) -> corio::task<void> {
          auto listener =
              corio::tcp_listener::bind("127.0.0.1", options.port, {.reuse_port = true});
          corio::event_loop::current().spawn(accept_loop(std::move(listener), options.line));
          if (++listening == core.count()) {
            std::printf("listening on 127.0.0.1:%u (%u loops)\n", options.port, core.count());
            std::fflush(stdout);
          }
          if (core.index() == 0) {
            co_await corio::io::poll(signal_fd, POLLIN);
            stopping = true;
          }
          while (!stopping) co_await corio::sleep_for(20ms);
          stats[core.index()] = corio::event_loop::current().stats();
        },
        {.backend = options.backend});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "corio_echo_mt: %s\n", e.what());
    return 1;
  }
  corio::loop_stats total;
  for (const corio::loop_stats& s : stats) {
    total.syscalls += s.syscalls;
    total.completions += s.completions;
    total.iterations += s.iterations;
    total.submissions += s.submissions;
    total.waits += s.waits;
  }
  if (!options.stats_file.empty()) {
    if (std::FILE* f = std::fopen(options.stats_file.c_str(), "w")) {
      std::fprintf(f,
                   "syscalls %llu\ncompletions %llu\niterations %llu\nsubmissions %llu\n"
                   "waits %llu\n",
                   static_cast<unsigned long long>(total.syscalls),
                   static_cast<unsigned long long>(total.completions),
                   static_cast<unsigned long long>(total.iterations),
                   static_cast<unsigned long long>(total.submissions),
                   static_cast<unsigned long long>(total.waits));
      std::fclose(f);
    }
  }
  ::close(signal_fd);
  return 0;
}
