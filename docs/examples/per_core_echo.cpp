// A thread-per-core line-echo server: one event loop per CPU, each with its own SO_REUSEPORT
// listener on the same port, so the kernel spreads connections and the threads share nothing.
// Usage: per_core_echo [PORT] [THREADS]   (port 0 picks a free one; threads 0 = one per CPU).
// SIGINT stops every loop and the program exits.
#include <signal.h>

#include <atomic>
#include <corio/corio.hpp>
#include <cstdio>
#include <cstdlib>

using namespace std::chrono_literals;

corio::task<void> serve(corio::tcp_stream client) {
  try {
    for (;;) client.write(co_await client.read_until("\n", 64 * 1024));
  } catch (const corio::stream_closed_error&) {
  }
}

corio::task<void> accept_loop(corio::tcp_listener listener) {
  for (;;) corio::event_loop::current().spawn(serve(co_await listener.accept()));
}

int main(int argc, char** argv) {
  std::atomic<int> port = argc > 1 ? std::atoi(argv[1]) : 7000;
  unsigned threads = argc > 2 ? std::atoi(argv[2]) : 0;

  corio::run_per_core(threads, [&](corio::core_context& core) -> corio::task<void> {
    if (core.index() > 0) {  // with port 0, loop 0 picks the port; the others then join it
      while (port.load() == 0) co_await corio::sleep_for(1ms);
    }
    auto listener = corio::tcp_listener::bind("127.0.0.1", port.load(), {.reuse_port = true});
    if (core.index() == 0) {
      // Loop 0 waits for SIGINT; caught from here on (before "listening on" is printed),
      // whichever thread the kernel hands it to.
      corio::signal_set sigint{SIGINT};
      port = listener.port();
      std::printf("listening on %s (%u threads)\n", listener.local_endpoint().to_string().c_str(),
                  core.count());
      std::fflush(stdout);
      corio::event_loop::current().spawn(accept_loop(std::move(listener)));
      co_await sigint.wait();
      core.stop_all();
    } else {
      co_await accept_loop(std::move(listener));
    }
  });
  std::printf("stopped\n");
}
