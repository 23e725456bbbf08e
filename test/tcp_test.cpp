// tcp_stream::connect on both backends, over loopback: the endpoint-list overload, falling
// through failed addresses, the error of the last attempt (S47), and the fds it leaves.
#include "corio/tcp.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "corio/errors.hpp"
#include "corio/loop.hpp"
#include "corio/timeout.hpp"
#include "support/backends.hpp"
#include "support/raw_sockets.hpp"

namespace {

using namespace std::chrono_literals;
using corio::connect_options;
using corio::endpoint;
using corio::stream_closed_error;
using corio::task;
using corio::tcp_listener;
using corio::tcp_stream;
using corio::testing::open_fd_count;
using corio::testing::unique_fd;
using clock_type = std::chrono::steady_clock;

class TcpConnect : public corio::testing::backend_test {};
CORIO_INSTANTIATE_BACKENDS(TcpConnect);

double ms_since(clock_type::time_point start) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - start).count();
}

std::error_code os_code(int err) { return {err, std::generic_category()}; }

// ASSERT_* cannot be used in a coroutine (it expands to `return;`): the test ends here if `out`
// (an outcome) did not connect.
#define CO_ASSERT_CONNECTED(out)                            \
  do {                                                      \
    if (!(out).connected_port) {                            \
      ADD_FAILURE() << "connect failed: " << (out).message; \
      co_return;                                            \
    }                                                       \
  } while (0)

/// The loopback address of `family` as text.
const char* loopback(int family) { return family == AF_INET6 ? "::1" : "127.0.0.1"; }

/// A TCP socket of `family` bound to the loopback address on a free port.
unique_fd bound_socket(int family, std::uint16_t& port) {
  unique_fd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) corio::testing::throw_errno("socket");
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (family == AF_INET6) {
    auto& sin6 = reinterpret_cast<sockaddr_in6&>(ss);
    sin6.sin6_family = AF_INET6;
    sin6.sin6_addr = in6addr_loopback;
    len = sizeof sin6;
  } else {
    auto& sin = reinterpret_cast<sockaddr_in&>(ss);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof sin;
  }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    corio::testing::throw_errno("bind");
  }
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    corio::testing::throw_errno("getsockname");
  }
  port = ntohs(family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(ss).sin6_port
                                  : reinterpret_cast<sockaddr_in&>(ss).sin_port);
  return fd;
}

/// True if this machine has IPv6 loopback (::1 on lo).
bool ipv6_loopback_available() {
  try {
    std::uint16_t port = 0;
    bound_socket(AF_INET6, port);
    return true;
  } catch (const std::system_error&) {
    return false;
  }
}

#define REQUIRE_IPV6_LOOPBACK()                                                   \
  do {                                                                            \
    if (!ipv6_loopback_available()) {                                             \
      GTEST_SKIP() << "no IPv6 loopback (::1) on this machine: skipping the "     \
                      "IPv6 case (the same logic is tested with IPv4 addresses)"; \
    }                                                                             \
  } while (0)

/// A port that refuses connections: bound, not listening (the kernel answers SYNs with RST).
struct refusing_port {
  explicit refusing_port(int family = AF_INET) : fd(bound_socket(family, port)) {
    at = {loopback(family), port};
  }
  std::uint16_t port = 0;
  unique_fd fd;
  endpoint at;
};

/// A listener that accepts on its own (tcp_listener on the loopback address of `family`).
struct accepting_port {
  explicit accepting_port(int family = AF_INET)
      : listener(tcp_listener::bind(loopback(family), 0)) {
    at = {loopback(family), listener.port()};
  }
  tcp_listener listener;
  endpoint at;
};

/// IPv4 multicast: TCP connect fails at once with ENETUNREACH, without sending anything.
endpoint unreachable_endpoint() { return {"224.0.0.1", 9}; }

/// Runs connect(endpoints, options) to its end: the stream's peer port, or the
/// stream_closed_error's code.
struct outcome {
  std::optional<std::uint16_t> connected_port;
  std::optional<std::error_code> error;
  std::string message;
};
task<outcome> try_connect(const std::vector<endpoint>& endpoints, connect_options options) {
  outcome out;
  try {
    tcp_stream s = co_await tcp_stream::connect(endpoints, options);
    out.connected_port = s.remote_endpoint().port;
  } catch (const stream_closed_error& e) {
    out.error = e.code();
    out.message = e.what();
  }
  co_return out;
}

// ------------------------------------------------------------------ the endpoint list

// A refused address falls through to the next one at once (S51: "as soon as an attempt fails").
TEST_P(TcpConnect, EndpointList_RefusedFirstAddress_FallsThroughToTheNext_S51) {
  run([]() -> task<void> {
    refusing_port refused;
    accepting_port good;
    const int baseline = open_fd_count();
    connect_options options;
    options.timeout = 5s;
    std::vector<endpoint> endpoints{refused.at, good.at};
    const auto start = clock_type::now();
    outcome out = co_await try_connect(endpoints, options);
    EXPECT_LT(ms_since(start), 1000.0);
    CO_ASSERT_CONNECTED(out);
    EXPECT_EQ(*out.connected_port, good.at.port);
    EXPECT_EQ(open_fd_count(), baseline) << "the refused attempt's socket is still open";
  }());
}

// Every address fails: stream_closed_error with the OS error of the last attempt (S47, S51),
// and no socket is left open.
TEST_P(TcpConnect, EndpointList_AllFail_ThrowsTheLastAttemptsError_S47) {
  run([]() -> task<void> {
    refusing_port refused;
    const int baseline = open_fd_count();
    std::vector<endpoint> refused_last{unreachable_endpoint(), refused.at};
    outcome out = co_await try_connect(refused_last, {});
    EXPECT_EQ(out.error, os_code(ECONNREFUSED)) << out.message;
    EXPECT_NE(out.message.find(refused.at.to_string()), std::string::npos) << out.message;
    std::vector<endpoint> unreachable_last{refused.at, unreachable_endpoint()};
    out = co_await try_connect(unreachable_last, {});
    EXPECT_EQ(out.error, os_code(ENETUNREACH)) << out.message;
    EXPECT_EQ(open_fd_count(), baseline);
  }());
}

// The list is checked at the call: empty, or an address that is not numeric.
TEST_P(TcpConnect, EndpointList_EmptyOrNotNumeric_ThrowsInvalidArgumentAtTheCall) {
  run([]() -> task<void> {
    std::vector<endpoint> none;
    EXPECT_THROW((void)tcp_stream::connect(none), std::invalid_argument);
    std::vector<endpoint> named{{"localhost", 80}};
    EXPECT_THROW((void)tcp_stream::connect(named), std::invalid_argument);
    co_return;
  }());
}

// "[::1]" is accepted as well as "::1".
TEST_P(TcpConnect, EndpointList_BracketedIPv6Address) {
  REQUIRE_IPV6_LOOPBACK();
  run([]() -> task<void> {
    accepting_port good(AF_INET6);
    std::vector<endpoint> endpoints{{"[::1]", good.at.port}};
    outcome out = co_await try_connect(endpoints, {});
    CO_ASSERT_CONNECTED(out);
    EXPECT_EQ(*out.connected_port, good.at.port);
  }());
}

// A name still goes through the resolver ("localhost" is 127.0.0.1 here, maybe ::1 too).
TEST_P(TcpConnect, HostName_IsResolvedAndConnected_S51) {
  run([]() -> task<void> {
    accepting_port good;
    connect_options options;
    options.timeout = 10s;
    tcp_stream s = co_await tcp_stream::connect("localhost", good.at.port, options);
    EXPECT_EQ(s.remote_endpoint().address, "127.0.0.1");
  }());
}

}  // namespace
