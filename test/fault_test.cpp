// Fault injection (issue 8, reliability-scenarios.md B4, B5, B9, A1): streams over loopback TCP
// on a loop whose backend is wrapped by the fault-injecting backend
// (lib/backend/fault_backend.hpp), on both real backends.
//
// - EchoMatchesModelUnderFaults: short reads/writes down to 1 byte, EAGAIN/EINTR retried by
//   the backend, late completions, late cancels, and (io_uring) an exhausted buffer ring.
//   Clients send known bytes with '\n' scattered in them and read the echo back with random
//   read_bytes / read_until / partial reads; every result must equal the model's exactly.
// - RandomHardErrorsNeverLoseBytes: additionally ECONNRESET/EPIPE completions at random.
//   Each connection ends either complete or with stream_closed_error naming ECONNRESET,
//   EPIPE or EOF; what was read before is exactly a prefix of what was sent.
// - FailCountSweep_B5: one hard error at data op N, for N = 0, 1, ... until a run has no
//   op N left; each run ends cleanly (bounded), and the fd count is back to its baseline.
//
// - MultishotEndedByAnError_...: io_uring multishot receives ended with ECONNRESET (and with
//   ECANCELED/ENOBUFS, answers cut short): the lines before the error arrive whole, in order.
//
// Reproduce: CORIO_FAULT_SEED=<seed printed by the failing test>.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/fault_backend.hpp"
#include "corio/corio.hpp"
#include "support/backends.hpp"

using namespace corio;
using namespace std::chrono_literals;
using corio::detail::fault_plan;
using corio::detail::scoped_fault_plan;

namespace {

std::uint64_t env_u64(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::strtoull(v, nullptr, 0);
}

std::string make_payload(std::mt19937_64& rng, std::size_t n) {
  std::string s(n, '\0');
  for (char& c : s) {
    auto r = rng() % 64;
    c = r == 0 ? '\n' : static_cast<char>(r == 1 ? 0 : 'a' + r % 26);  // NULs too (A6)
  }
  return s;
}

struct tally {
  std::uint64_t connections = 0;
  std::uint64_t complete = 0;
  std::uint64_t reads = 0;
  std::uint64_t bytes = 0;
  std::uint64_t ended_by_error = 0;
  bool multishot = false;            ///< the loop's backend offered multishot receives
  std::uint64_t multishot_arms = 0;  ///< the loop's loop_stats::multishot_arms
  std::vector<std::string> failures;
};

/// Echoes until the peer closes or an error closes the stream.
task<void> echo_session(tcp_stream s) {
  try {
    for (;;) {
      std::string chunk = co_await s.read_bytes(65536, true);
      co_await s.write(chunk);
    }
  } catch (const stream_closed_error&) {
  }
}

task<void> serve(tcp_listener& listener, int connections) {
  for (int i = 0; i < connections; ++i) {
    tcp_stream s = co_await listener.accept();
    event_loop::current().spawn(echo_session(std::move(s)));
  }
}

task<void> send_all(tcp_stream& c, const std::string& data, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::size_t off = 0;
  while (off < data.size()) {
    std::size_t n = std::min<std::size_t>(data.size() - off, 1 + rng() % 9000);
    co_await c.write(std::string_view(data).substr(off, n));
    off += n;
  }
}

bool allowed_close(std::error_code code) {
  return !code || code == std::error_code(ECONNRESET, std::generic_category()) ||
         code == std::error_code(EPIPE, std::generic_category());
}

/// Sends `size` known bytes and reads the echo back with random reads checked against the
/// model (the bytes sent). With `errors_allowed`, a stream_closed_error with an allowed code
/// ends the connection; what was read is then a prefix of what was sent.
task<void> client(std::uint16_t port, std::uint64_t seed, std::size_t size, bool errors_allowed,
                  tally& t) {
  std::mt19937_64 rng(seed);
  const std::string data = make_payload(rng, size);
  ++t.connections;
  std::size_t pos = 0;  // the model: data[pos..] is what the echo still owes us
  auto fail = [&](const std::string& what) {
    t.failures.push_back("seed " + std::to_string(seed) + " at byte " + std::to_string(pos) + ": " +
                         what);
  };
  tcp_stream c;
  try {
    c = co_await tcp_stream::connect("127.0.0.1", port);
  } catch (const corio::error& e) {
    if (!errors_allowed) fail(std::string("connect failed: ") + e.what());
    ++t.ended_by_error;
    co_return;
  }
  task<void> writer = start(send_all(c, data, seed + 1));
  try {
    while (pos < data.size()) {
      std::string got;
      std::string want;
      int kind = static_cast<int>(rng() % 3);
      if (kind == 0) {
        std::size_t n = 1 + rng() % std::min<std::size_t>(data.size() - pos, 20000);
        got = co_await c.read_bytes(n);
        want = data.substr(pos, n);
      } else if (kind == 1 && data.find('\n', pos) != std::string::npos) {
        got = co_await c.read_until("\n");
        want = data.substr(pos, data.find('\n', pos) + 1 - pos);
      } else {
        std::size_t n = 1 + rng() % 5000;
        got = co_await c.read_bytes(n, true);
        if (got.empty() || got.size() > n) {
          fail("partial read returned " + std::to_string(got.size()) + " bytes, wanted 1.." +
               std::to_string(n));
          break;
        }
        want = data.substr(pos, got.size());
      }
      ++t.reads;
      if (got != want) {
        fail("read returned different bytes (" + std::to_string(got.size()) + " vs " +
             std::to_string(want.size()) + ")");
        break;
      }
      pos += got.size();
      t.bytes += got.size();
    }
    co_await std::move(writer);
    if (pos == data.size()) ++t.complete;
  } catch (const stream_closed_error& e) {
    ++t.ended_by_error;
    if (!errors_allowed || !allowed_close(e.code())) {
      fail(std::string("stream_closed_error: ") + e.what() + " [" + e.code().message() + "]");
    }
  }
  c.close();
}

/// One loop with the plan installed: `connections` clients against one echo server.
void run_echo(corio::backend b, std::shared_ptr<fault_plan> plan, int connections, std::size_t size,
              bool errors_allowed, tally& t) {
  scoped_fault_plan install(plan);
  loop_options o;
  o.backend = b;
  o.recv_buffer_count = 2;  // io_uring: an exhausted buffer ring (-ENOBUFS re-arms, rule 4)
  event_loop loop(o);
  loop.run(with_timeout(60s,
                        [](int connections, std::size_t size, bool errors_allowed,
                           std::uint64_t seed, tally& t) -> task<void> {
                          tcp_listener listener = tcp_listener::bind("127.0.0.1", 0);
                          task<void> server = start(serve(listener, connections));
                          std::vector<task<void>> clients;
                          for (int i = 0; i < connections; ++i) {
                            clients.push_back(start(
                                client(listener.port(), seed * 1000 + static_cast<std::uint64_t>(i),
                                       size, errors_allowed, t)));
                          }
                          for (auto& c : clients) co_await std::move(c);
                          listener.close();
                          try {
                            co_await std::move(server);
                          } catch (const corio::error&) {
                            // the listener closed while accepting: only if a client never connected
                          }
                        }(connections, size, errors_allowed, plan->seed, t)));
  t.multishot = loop.backend_impl().supports_multishot_recv();
  t.multishot_arms = loop.stats().multishot_arms;
}

std::string describe(const fault_plan& p) {
  const auto& c = p.counts;
  char line[400];
  std::snprintf(
      line, sizeof line,
      "%llu ops (%llu data), %llu short (%llu to 1 byte), %llu EAGAIN/EINTR retried, "
      "%llu errors injected, %llu late completions, %llu cancels (%llu late), "
      "%llu multishot answers, %llu multishot ends",
      static_cast<unsigned long long>(c.ops), static_cast<unsigned long long>(c.data_ops),
      static_cast<unsigned long long>(c.short_io), static_cast<unsigned long long>(c.one_byte),
      static_cast<unsigned long long>(c.transient), static_cast<unsigned long long>(c.errors),
      static_cast<unsigned long long>(c.late_completions),
      static_cast<unsigned long long>(c.cancels), static_cast<unsigned long long>(c.late_cancels),
      static_cast<unsigned long long>(c.multishot_answers),
      static_cast<unsigned long long>(c.multishot_ends));
  return line;
}

std::string fd_listing() {
  std::string out;
  for (int fd = 0; fd < 1024; ++fd) {
    char path[64];
    char target[256];
    std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = ::readlink(path, target, sizeof target - 1);
    if (n > 0)
      out += std::to_string(fd) + "->" + std::string(target, static_cast<std::size_t>(n)) + " ";
  }
  return out;
}

class Faults : public corio::testing::backend_test {};

/// Rounds alternate between plans that fault every receive (single-shot receives only) and
/// plans that leave io_uring its multishot receives (fault_plan::multishot), so that the
/// faults of the other ops also run against the multishot paths.
bool multishot_round(std::uint64_t round) { return round % 2 == 1; }

/// A multishot round's loop offers multishot receives where the kernel has them. (Whether a
/// stream arms one depends on its first receive: a large one keeps it single-shot, so one
/// round may arm none; the two multishot rounds of a test together arm some, checked by
/// expect_multishot_armed.)
void expect_multishot_offered(corio::backend b, const fault_plan& plan, const tally& t) {
  EXPECT_EQ(t.multishot, plan.multishot && corio::testing::multishot_expected(b));
}

void expect_multishot_armed(corio::backend b, std::uint64_t arms) {
  if (corio::testing::multishot_expected(b)) {
    EXPECT_GT(arms, 0u) << "no multishot round armed a multishot receive";
  } else {
    EXPECT_EQ(arms, 0u);
  }
}

TEST_P(Faults, EchoMatchesModelUnderFaults) {
  const std::uint64_t seed = env_u64("CORIO_FAULT_SEED", std::random_device{}());
  SCOPED_TRACE("CORIO_FAULT_SEED=" + std::to_string(seed));
  const int fds = corio::testing::open_fd_count();
  std::uint64_t arms = 0;
  for (std::uint64_t round = 0; round < 4; ++round) {
    auto plan = std::make_shared<fault_plan>();
    plan->seed = seed + round;
    plan->multishot = multishot_round(round);
    tally t;
    run_echo(GetParam(), plan, 4, 48 << 10, false, t);
    arms += t.multishot_arms;
    for (const auto& f : t.failures) ADD_FAILURE() << f;
    EXPECT_EQ(t.complete, t.connections);
    EXPECT_GT(plan->counts.short_io, 0u);
    EXPECT_EQ(plan->counts.errors, 0u);
    expect_multishot_offered(GetParam(), *plan, t);
    std::printf(
        "[ faults   ] %s seed %llu%s: %llu connections, %llu reads, %llu bytes checked; %s\n",
        to_string(GetParam()), static_cast<unsigned long long>(plan->seed),
        t.multishot_arms > 0 ? " (multishot)" : "", static_cast<unsigned long long>(t.connections),
        static_cast<unsigned long long>(t.reads), static_cast<unsigned long long>(t.bytes),
        describe(*plan).c_str());
  }
  expect_multishot_armed(GetParam(), arms);
  EXPECT_EQ(corio::testing::open_fd_count(), fds);
}

TEST_P(Faults, RandomHardErrorsNeverLoseBytes) {
  const std::uint64_t seed = env_u64("CORIO_FAULT_SEED", std::random_device{}());
  SCOPED_TRACE("CORIO_FAULT_SEED=" + std::to_string(seed));
  const int fds = corio::testing::open_fd_count();
  std::uint64_t errors = 0;
  std::uint64_t ended = 0;
  std::uint64_t arms = 0;
  for (std::uint64_t round = 0; round < 4; ++round) {
    auto plan = std::make_shared<fault_plan>();
    plan->seed = seed + round;
    // About 100-150 data ops per round: at 1 % a quarter of the rounds injected none, and all
    // four rounds none about once in 150 runs; at 2 %, far less than once in 10^4.
    plan->error_rate = 0.02;
    plan->multishot = multishot_round(round);
    tally t;
    run_echo(GetParam(), plan, 4, 32 << 10, true, t);
    arms += t.multishot_arms;
    for (const auto& f : t.failures) ADD_FAILURE() << f;
    EXPECT_EQ(t.complete + t.ended_by_error, t.connections);
    expect_multishot_offered(GetParam(), *plan, t);
    errors += plan->counts.errors;
    ended += t.ended_by_error;
    std::printf(
        "[ faults   ] %s seed %llu%s: %llu/%llu connections complete, %llu ended by an "
        "error; %s\n",
        to_string(GetParam()), static_cast<unsigned long long>(plan->seed),
        t.multishot_arms > 0 ? " (multishot)" : "", static_cast<unsigned long long>(t.complete),
        static_cast<unsigned long long>(t.connections),
        static_cast<unsigned long long>(t.ended_by_error), describe(*plan).c_str());
  }
  EXPECT_GT(errors, 0u);
  expect_multishot_armed(GetParam(), arms);
  std::printf("[ faults   ] %s: %llu errors injected, %llu connections ended by one\n",
              to_string(GetParam()), static_cast<unsigned long long>(errors),
              static_cast<unsigned long long>(ended));
  EXPECT_EQ(corio::testing::open_fd_count(), fds) << fd_listing();
}

// B5: the fail_count sweep. One echo connection (client and server on the same faulted
// loop); data op N fails with ECONNRESET/EPIPE. Every run ends (bounded) either complete or
// with an allowed stream_closed_error, with no fd left open.
TEST_P(Faults, FailCountSweep_B5) {
  const int fds = corio::testing::open_fd_count();
  long long n = 0;
  int complete_runs = 0;
  for (; n < 400; ++n) {
    auto plan = std::make_shared<fault_plan>();
    plan->seed = 1000 + static_cast<std::uint64_t>(n);
    plan->short_io = 0.2;
    plan->transient = 0.05;
    plan->fail_at = n;
    tally t;
    run_echo(GetParam(), plan, 1, 24 << 10, true, t);
    for (const auto& f : t.failures) ADD_FAILURE() << "fail_at=" << n << ": " << f;
    EXPECT_EQ(t.complete + t.ended_by_error, t.connections) << "fail_at=" << n;
    EXPECT_EQ(corio::testing::open_fd_count(), fds) << "fd leak with fail_at=" << n;
    if (::testing::Test::HasFailure()) break;
    if (plan->counts.errors == 0) {  // the run had fewer than n+1 data ops: swept them all
      ++complete_runs;
      break;
    }
  }
  std::printf("[ faults   ] %s: fail_count sweep over data ops 0..%lld, each run clean\n",
              to_string(GetParam()), n);
  EXPECT_EQ(complete_runs, 1) << "the sweep did not reach the end of the exchange";
}

// A multishot receive ended by the kernel with an error (ECONNRESET), with short answers and
// ECANCELED/ENOBUFS ends around it: the lines received before the error reach the reader
// whole and in order, then the read fails with ECONNRESET. Other ops are not faulted, so each
// connection ends by such an end or completes. (epoll has no multishot: every connection
// completes.)
TEST_P(Faults, MultishotEndedByAnError_LinesBeforeItArriveInOrder_ThenTheError) {
  const std::uint64_t seed = env_u64("CORIO_FAULT_SEED", std::random_device{}());
  SCOPED_TRACE("CORIO_FAULT_SEED=" + std::to_string(seed));
  auto plan = std::make_shared<fault_plan>();
  plan->seed = seed;
  plan->multishot = true;
  plan->transient = plan->late_completion = plan->late_cancel = 0;
  plan->multishot_end = 0.2;
  plan->multishot_error = 0.05;
  scoped_fault_plan install(plan);
  event_loop loop({.backend = GetParam()});
  int complete = 0;
  int reset = 0;
  loop.run(with_timeout(30s, [](int& complete, int& reset) -> task<void> {
    for (int connection = 0; connection < 20; ++connection) {
      auto [a, b] = stream_pair();
      std::string sent;
      for (int i = 0; i < 200; ++i) sent += "line " + std::to_string(i) + "\n";
      auto writer = [](tcp_stream& to, const std::string& lines) -> task<void> {
        try {
          for (std::size_t at = 0; at < lines.size();) {
            std::size_t end = lines.find('\n', at) + 1;
            co_await to.write(std::string_view(lines).substr(at, end - at));
            at = end;
          }
          to.close();
        } catch (const stream_closed_error&) {
          // the reader's side was closed by the injected error
        }
      };
      task<void> w = start(writer(a, sent));
      std::string got;
      std::error_code ended;
      try {
        for (;;) got += co_await b.read_until("\n");
      } catch (const stream_closed_error& e) {
        ended = e.code();
      }
      b.close();
      co_await std::move(w);
      EXPECT_EQ(sent.compare(0, got.size(), got), 0) << "not a prefix, connection " << connection;
      if (!ended) {
        EXPECT_EQ(got, sent);
        ++complete;
      } else {
        EXPECT_EQ(ended, std::error_code(ECONNRESET, std::generic_category()));
        ++reset;
      }
    }
  }(complete, reset)));
  std::printf("[ faults   ] %s seed %llu: %d connections complete, %d ended by ECONNRESET; %s\n",
              to_string(GetParam()), static_cast<unsigned long long>(seed), complete, reset,
              describe(*plan).c_str());
  if (corio::testing::multishot_expected(GetParam())) {
    EXPECT_GT(reset, 0) << "no multishot was ended by an error";
    EXPECT_GT(plan->counts.multishot_ends, plan->counts.errors) << "no ECANCELED/ENOBUFS end";
  } else {
    EXPECT_EQ(reset, 0);
  }
}

}  // namespace

CORIO_INSTANTIATE_BACKENDS(Faults);
