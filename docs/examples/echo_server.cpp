// echo_server: a single-threaded TCP echo server written with corio.
//
//   echo_server [--backend io_uring|epoll] [--port N] [--mode raw|line] [--stats-file PATH]
//               [--tls-cert FILE --tls-key FILE]
//
// raw mode echoes whatever arrives; line mode answers every "\r\n"-terminated line with the
// same line. Once it listens it prints one line, "listening on 127.0.0.1:N". SIGINT or
// SIGTERM stops it; it then prints the loop's counters ("stats: syscalls=... ") and, with
// --stats-file, writes them to PATH as "name value" lines, operations by kind included
// (bench/table.py reads them to compute system calls and sends per message). With --tls-cert and
// --tls-key it serves the same modes over TLS. The benchmarks build this file as `corio_echo`.
#include <netinet/in.h>
#include <signal.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "corio/corio.hpp"

namespace {

enum class echo_mode { raw, line };

struct server_options {
  corio::backend backend = corio::backend::io_uring;
  std::uint16_t port = 7000;
  echo_mode mode = echo_mode::raw;
  std::string stats_file;
  std::string tls_cert, tls_key;  // both set: serve TLS
};

// raw: echo each chunk as it arrives. read_bytes(n, partial=true) completes with whatever is
// buffered (1..n bytes), so one received chunk becomes one write.
corio::task<void> echo_raw(corio::stream client) {
  try {
    for (;;) {
      std::string chunk = co_await client.read_bytes(65536, /*partial=*/true);
      client.write(std::move(chunk));
    }
  } catch (const corio::stream_closed_error&) {
    // The client went away (EOF or reset): nothing left to do.
  }
}

// line: answer each line. The writes are not awaited: every write issued during one loop
// turn leaves in a single gathered send, so 16 pipelined lines cost one system call, not 16.
// (A server facing untrusted clients would bound this with stream_options and await the
// write now and then; see max_write_buffer_size.)
corio::task<void> echo_lines(corio::stream client) {
  try {
    for (;;) {
      std::string line = co_await client.read_until("\r\n");
      client.write(std::move(line));
    }
  } catch (const corio::stream_closed_error&) {
  }
}

// Accepts forever; each connection gets its own detached coroutine. The listener lives in
// this coroutine's frame, so it is closed when the loop destroys the coroutine at exit.
corio::task<void> accept_loop(corio::tcp_listener listener, echo_mode mode,
                              corio::tls_context* tls) {
  corio::event_loop& loop = corio::event_loop::current();
  for (;;) {
    corio::tcp_stream accepted = co_await listener.accept();
    accepted.set_nodelay(true);
    // TLS or not, the echo coroutines see the same stream API.
    corio::stream client = tls ? corio::stream(corio::tls_stream::accept(std::move(accepted), *tls))
                               : corio::stream(std::move(accepted));
    if (mode == echo_mode::raw) {
      loop.spawn(echo_raw(std::move(client)));
    } else {
      loop.spawn(echo_lines(std::move(client)));
    }
  }
}

corio::task<void> serve(const server_options& options, corio::signal_set& stop) {
  auto listener = corio::tcp_listener::bind("127.0.0.1", options.port, {.backlog = 4096});
  std::printf("listening on %s\n", listener.local_endpoint().to_string().c_str());
  std::fflush(stdout);
  std::unique_ptr<corio::tls_context> tls;
  if (!options.tls_cert.empty()) {
    tls = std::make_unique<corio::tls_context>(corio::tls_role::server);
    tls->use_certificate_chain_file(options.tls_cert).use_private_key_file(options.tls_key);
  }
  corio::event_loop::current().spawn(accept_loop(std::move(listener), options.mode, tls.get()));
  co_await stop.wait();  // SIGINT or SIGTERM
}

void report(const corio::loop_stats& stats, const std::string& stats_file) {
  std::printf("stats: syscalls=%llu completions=%llu iterations=%llu submissions=%llu waits=%llu\n",
              static_cast<unsigned long long>(stats.syscalls),
              static_cast<unsigned long long>(stats.completions),
              static_cast<unsigned long long>(stats.iterations),
              static_cast<unsigned long long>(stats.submissions),
              static_cast<unsigned long long>(stats.waits));
  std::fflush(stdout);
  if (stats_file.empty()) return;
  if (std::FILE* f = std::fopen(stats_file.c_str(), "w")) {
    std::fprintf(f,
                 "syscalls %llu\ncompletions %llu\niterations %llu\nsubmissions %llu\nwaits %llu\n",
                 static_cast<unsigned long long>(stats.syscalls),
                 static_cast<unsigned long long>(stats.completions),
                 static_cast<unsigned long long>(stats.iterations),
                 static_cast<unsigned long long>(stats.submissions),
                 static_cast<unsigned long long>(stats.waits));
    std::fprintf(f,
                 "multishot_arms %llu\nbuffers_held %llu\nring_empty_fallbacks %llu\n"
                 "string_receives %llu\n",
                 static_cast<unsigned long long>(stats.multishot_arms),
                 static_cast<unsigned long long>(stats.buffers_held),
                 static_cast<unsigned long long>(stats.ring_empty_fallbacks),
                 static_cast<unsigned long long>(stats.string_receives));
    // Operations by kind ("ops_sendmsg 1234"): bench/table.py counts sends per message.
    for (std::size_t kind = 0; kind < stats.ops_by_kind.size(); ++kind) {
      std::fprintf(f, "ops_%s %llu\n",
                   corio::detail::op_kind_name(static_cast<corio::detail::op_kind>(kind)),
                   static_cast<unsigned long long>(stats.ops_by_kind[kind]));
    }
    std::fclose(f);
  } else {
    std::fprintf(stderr, "echo_server: cannot write %s: %s\n", stats_file.c_str(),
                 std::strerror(errno));
  }
}

server_options parse_arguments(int argc, char** argv) {
  server_options options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) throw std::invalid_argument(std::string(arg) + " needs a value");
      return argv[++i];
    };
    if (arg == "--backend") {
      options.backend = corio::parse_backend(value());
    } else if (arg == "--port") {
      options.port = static_cast<std::uint16_t>(std::stoi(std::string(value())));
    } else if (arg == "--mode") {
      std::string_view mode = value();
      if (mode != "raw" && mode != "line") throw std::invalid_argument("--mode: raw or line");
      options.mode = mode == "raw" ? echo_mode::raw : echo_mode::line;
    } else if (arg == "--stats-file") {
      options.stats_file = value();
    } else if (arg == "--tls-cert") {
      options.tls_cert = value();
    } else if (arg == "--tls-key") {
      options.tls_key = value();
    } else {
      throw std::invalid_argument("unknown argument " + std::string(arg));
    }
  }
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    throw std::invalid_argument("--tls-cert and --tls-key go together");
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  server_options options;
  try {
    options = parse_arguments(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr,
                 "echo_server: %s\nusage: echo_server [--backend io_uring|epoll] [--port N] "
                 "[--mode raw|line] [--stats-file PATH] [--tls-cert FILE --tls-key FILE]\n",
                 e.what());
    return 2;
  }

  try {
    // Caught from here on, before "listening on" is printed, whichever thread the kernel picks.
    corio::signal_set stop{SIGINT, SIGTERM};
    corio::event_loop loop({.backend = options.backend});
    loop.run(serve(options, stop));
    report(loop.stats(), options.stats_file);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "echo_server: %s\n", e.what());
    return 1;
  }
  return 0;
}
