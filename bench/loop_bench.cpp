// bench/loop_bench.cpp - event-loop micro benchmarks on both backends.
//
// Workloads: post() throughput from the loop thread and from another thread, timer churn
// (call_later + cancel, and chains of sleep_for(0)), and a one-byte ping-pong over a
// socketpair between two coroutines of one loop (io::send / io::recv). For each workload and
// backend it measures ops/s and syscalls per op (from loop_stats), and prints one table:
//
//   workload | io_uring ops/s | epoll ops/s | io_uring syscalls/op | epoll syscalls/op
//
// A plain program (not Google Benchmark): loop_bench [--quick] [--backend io_uring|epoll|both]
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "corio/io.hpp"
#include "corio/loop.hpp"
#include "corio/timeout.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using corio::event_loop;
using corio::task;

/// co_await suspends until set() is called on the loop thread.
class one_shot {
 public:
  void set() {
    set_ = true;
    if (waiter_) std::exchange(waiter_, nullptr).resume();
  }
  auto operator co_await() noexcept {
    struct awaiter {
      one_shot& event;
      bool await_ready() const noexcept { return event.set_; }
      void await_suspend(std::coroutine_handle<> h) noexcept { event.waiter_ = h; }
      void await_resume() const noexcept {}
    };
    return awaiter{*this};
  }

 private:
  bool set_ = false;
  std::coroutine_handle<> waiter_;
};

/// Posts from the loop thread itself, in batches of 1024 whose completion is awaited.
task<void> post_from_loop_thread(event_loop& loop, std::size_t ops) {
  constexpr std::size_t batch = 1024;
  std::size_t done = 0;
  while (done < ops) {
    std::size_t n = std::min(batch, ops - done);
    std::size_t ran = 0;
    one_shot all_ran;
    for (std::size_t i = 0; i < n; ++i) {
      loop.post([&ran, &all_ran, n] {
        if (++ran == n) all_ran.set();
      });
    }
    co_await all_ran;
    done += n;
  }
}

/// Another thread posts `ops` callbacks as fast as it can; the loop runs them.
task<void> post_from_other_thread(event_loop& loop, std::size_t ops) {
  std::size_t ran = 0;
  one_shot all_ran;
  std::jthread poster([&loop, &ran, &all_ran, ops] {
    for (std::size_t i = 0; i < ops; ++i) {
      loop.post([&ran, &all_ran, ops] {
        if (++ran == ops) all_ran.set();
      });
    }
  });
  co_await all_ran;
}

/// call_later(1 h) immediately cancelled; one loop iteration every 1024 pairs.
task<void> call_later_cancel(event_loop& loop, std::size_t ops) {
  for (std::size_t i = 0; i < ops; ++i) {
    corio::timer_handle h = loop.call_later(std::chrono::hours(1), [] {});
    h.cancel();
    if ((i & 1023) == 1023) co_await corio::sleep_for(std::chrono::nanoseconds(0));
  }
}

/// A chain of zero-delay sleeps: one loop iteration each.
task<void> sleep_zero_chain(event_loop&, std::size_t ops) {
  for (std::size_t i = 0; i < ops; ++i) co_await corio::sleep_for(std::chrono::nanoseconds(0));
}

task<void> ponger(int fd, std::size_t rounds, bool& finished) {
  std::array<std::byte, 1> b{};
  for (std::size_t i = 0; i < rounds; ++i) {
    if (co_await corio::io::recv(fd, b) != 1) throw std::runtime_error("ponger: recv failed");
    if (co_await corio::io::send(fd, b) != 1) throw std::runtime_error("ponger: send failed");
  }
  finished = true;
}

/// One byte each way over a socketpair, both ends coroutines on this loop.
task<void> ping_pong(event_loop& loop, std::size_t rounds) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
    throw std::runtime_error("socketpair failed");
  }
  bool pong_finished = false;
  loop.spawn(ponger(sv[1], rounds, pong_finished));
  std::array<std::byte, 1> b{std::byte{'x'}};
  for (std::size_t i = 0; i < rounds; ++i) {
    if (co_await corio::io::send(sv[0], b) != 1) throw std::runtime_error("ping: send failed");
    if (co_await corio::io::recv(sv[0], b) != 1) throw std::runtime_error("ping: recv failed");
  }
  while (!pong_finished) co_await corio::sleep_for(std::chrono::nanoseconds(0));
  // Why: through the loop, not ::close: the epoll backend keeps one registration per fd for
  // its lifetime and must forget it, or a new fd with the same number never gets events.
  loop.close_fd_after(sv[0], {});
  loop.close_fd_after(sv[1], {});
}

struct workload {
  const char* name;
  std::size_t quick_ops;
  std::size_t full_ops;
  task<void> (*body)(event_loop&, std::size_t);
};

const workload workloads[] = {
    {"post (loop thread)", 300'000, 3'000'000, post_from_loop_thread},
    {"post (other thread)", 300'000, 3'000'000, post_from_other_thread},
    {"call_later + cancel", 300'000, 3'000'000, call_later_cancel},
    {"sleep_for(0) chain", 50'000, 500'000, sleep_zero_chain},
    {"ping-pong 1 B (round trips)", 30'000, 300'000, ping_pong},
};

struct measurement {
  double ops_per_second = 0;
  double syscalls_per_op = 0;
};

measurement measure(corio::backend backend, const workload& w, std::size_t ops) {
  corio::loop_options options;
  options.backend = backend;
  event_loop loop(options);
  loop.run(w.body(loop, std::max<std::size_t>(ops / 10, 1)));  // warm-up: pools, rings, caches
  corio::loop_stats before = loop.stats();
  auto start = clock_type::now();
  loop.run(w.body(loop, ops));
  double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  corio::loop_stats after = loop.stats();
  return {static_cast<double>(ops) / seconds,
          static_cast<double>(after.syscalls - before.syscalls) / static_cast<double>(ops)};
}

std::string format_rate(std::optional<measurement> m) {
  if (!m) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f", m->ops_per_second);
  return buf;
}

std::string format_syscalls(std::optional<measurement> m) {
  if (!m) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", m->syscalls_per_op);
  return buf;
}

void usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s [--quick] [--backend io_uring|epoll|both]\n", argv0);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  bool run_uring = true;
  bool run_epoll = true;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view value;
    if (arg == "--quick") {
      quick = true;
      continue;
    }
    if (arg == "--help" || arg == "-h") {
      usage(argv[0]);
      return 0;
    }
    if (arg == "--backend" && i + 1 < argc) {
      value = argv[++i];
    } else if (arg.starts_with("--backend=")) {
      value = arg.substr(std::strlen("--backend="));
    } else {
      usage(argv[0]);
      return 2;
    }
    if (value == "both") {
      run_uring = run_epoll = true;
    } else if (value == "io_uring" || value == "uring") {
      run_uring = true;
      run_epoll = false;
    } else if (value == "epoll") {
      run_uring = false;
      run_epoll = true;
    } else {
      usage(argv[0]);
      return 2;
    }
  }

  if (run_uring) {
    try {
      corio::loop_options o;
      o.backend = corio::backend::io_uring;
      event_loop probe(o);
    } catch (const corio::backend_unavailable_error& e) {
      std::fprintf(stderr, "loop_bench: skipping io_uring: %s\n", e.what());
      run_uring = false;
    }
  }

  std::printf("loop_bench (%s): ops/s and syscalls per op from loop_stats, one loop per run\n\n",
              quick ? "--quick" : "full");
  std::printf("%-28s | %15s | %15s | %20s | %17s\n", "workload", "io_uring ops/s", "epoll ops/s",
              "io_uring syscalls/op", "epoll syscalls/op");
  std::printf("%s\n", std::string(28 + 15 + 15 + 20 + 17 + 4 * 3, '-').c_str());
  for (const workload& w : workloads) {
    std::size_t ops = quick ? w.quick_ops : w.full_ops;
    std::optional<measurement> uring, epoll;
    if (run_uring) uring = measure(corio::backend::io_uring, w, ops);
    if (run_epoll) epoll = measure(corio::backend::epoll, w, ops);
    std::printf("%-28s | %15s | %15s | %20s | %17s\n", w.name, format_rate(uring).c_str(),
                format_rate(epoll).c_str(), format_syscalls(uring).c_str(),
                format_syscalls(epoll).c_str());
    std::fflush(stdout);
  }
  return 0;
}
