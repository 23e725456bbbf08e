// tls_load: an echo load client written with corio, over TLS or plain TCP, so that TLS and
// plaintext echo are measured by the same client in the same run (bench/table.py).
//
//   tls_load --port N [--tls-ca FILE] [--conns N] [--size S] [--depth D] [--seconds T]
//            [--warmup W] [--backend io_uring|epoll]
//
// Each connection keeps D messages of S bytes in flight against a raw-mode echo server and
// checks every echoed byte. Prints a human line and "result: key=value ..." like echo_load.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <string>
#include <vector>

#include "corio/corio.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

struct settings {
  std::uint16_t port = 0;
  std::string tls_ca;
  int conns = 64;
  std::size_t size = 64;
  int depth = 8;
  double seconds = 5;
  double warmup = 0.25;
  corio::backend backend = corio::backend::automatic;
};

struct totals {
  std::uint64_t messages = 0;
  std::vector<double> latencies_us;
  bool failed = false;
  std::string error;
};

corio::task<void> one_connection(const settings& s, corio::tls_context* tls, totals& t,
                                 clock_type::time_point measure_from,
                                 clock_type::time_point until) {
  try {
    corio::tcp_stream plain =
        co_await corio::tcp_stream::connect("127.0.0.1", s.port, {.nodelay = true});
    // Why not `tls ? co_await … : …`: g++ 12 miscompiles co_await inside a conditional.
    corio::stream conn;
    if (tls) {
      conn = co_await std::move(plain).start_tls(*tls, "localhost");
    } else {
      conn = std::move(plain);
    }
    std::string payload(s.size, '\0');
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>('a' + i % 26);
    std::deque<clock_type::time_point> sent;
    for (int i = 0; i < s.depth; ++i) {
      conn.write(payload);
      sent.push_back(clock_type::now());
    }
    while (clock_type::now() < until) {
      std::string echoed = co_await conn.read_bytes(s.size);
      auto now = clock_type::now();
      if (echoed != payload) throw corio::error("echoed bytes differ");
      if (now >= measure_from) {
        ++t.messages;
        t.latencies_us.push_back(
            std::chrono::duration<double, std::micro>(now - sent.front()).count());
      }
      sent.pop_front();
      conn.write(payload);
      sent.push_back(now);
    }
    conn.close();
  } catch (const std::exception& e) {
    t.failed = true;
    t.error = e.what();
  }
}

corio::task<void> run(const settings& s, totals& t) {
  std::unique_ptr<corio::tls_context> tls;
  if (!s.tls_ca.empty()) {
    tls = std::make_unique<corio::tls_context>(corio::tls_role::client);
    tls->load_verify_file(s.tls_ca);
  }
  auto start = clock_type::now();
  auto measure_from = start + std::chrono::duration_cast<clock_type::duration>(
                                  std::chrono::duration<double>(s.warmup));
  auto until = measure_from + std::chrono::duration_cast<clock_type::duration>(
                                  std::chrono::duration<double>(s.seconds));
  std::vector<corio::task<void>> running;
  for (int i = 0; i < s.conns; ++i) {
    running.push_back(corio::start(one_connection(s, tls.get(), t, measure_from, until)));
  }
  for (auto& r : running) co_await std::move(r);
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::size_t k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

}  // namespace

int main(int argc, char** argv) {
  settings s;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--port")
      s.port = static_cast<std::uint16_t>(std::stoi(v));
    else if (a == "--tls-ca")
      s.tls_ca = v;
    else if (a == "--conns")
      s.conns = std::stoi(v);
    else if (a == "--size")
      s.size = std::stoul(v);
    else if (a == "--depth")
      s.depth = std::stoi(v);
    else if (a == "--seconds")
      s.seconds = std::stod(v);
    else if (a == "--warmup")
      s.warmup = std::stod(v);
    else if (a == "--backend")
      s.backend = corio::parse_backend(v);
    else
      return std::fprintf(stderr, "tls_load: unknown argument %s\n", a.c_str()), 2;
  }
  if (s.port == 0) return std::fprintf(stderr, "tls_load: --port is required\n"), 2;
  totals t;
  rusage before{}, after{};
  getrusage(RUSAGE_SELF, &before);
  try {
    corio::event_loop loop({.backend = s.backend});
    loop.run(run(s, t));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tls_load: %s\n", e.what());
    return 1;
  }
  getrusage(RUSAGE_SELF, &after);
  if (t.failed) return std::fprintf(stderr, "tls_load: %s\n", t.error.c_str()), 1;
  auto cpu = [](const rusage& r) {
    return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
           static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
  };
  double msgs = static_cast<double>(t.messages) / s.seconds;
  double mb = msgs * static_cast<double>(s.size) / 1e6;
  double p50 = percentile(t.latencies_us, 0.5), p99 = percentile(t.latencies_us, 0.99);
  double load_cpu = 100.0 * (cpu(after) - cpu(before)) / (s.seconds + s.warmup);
  std::printf("%s: %.0f msgs/s, %.1f MB/s, p50 %.0f us, p99 %.0f us\n",
              s.tls_ca.empty() ? "plain" : "tls", msgs, mb, p50, p99);
  std::printf(
      "result: msgs_per_s=%.1f mb_per_s=%.3f p50_us=%.1f p99_us=%.1f total_msgs=%llu "
      "load_cpu_pct=%.1f\n",
      msgs, mb, p50, p99, static_cast<unsigned long long>(t.messages), load_cpu);
  return 0;
}
