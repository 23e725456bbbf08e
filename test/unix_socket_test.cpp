// Unix domain stream sockets by path on both backends: tcp_listener::bind_unix (file paths,
// abstract names, stale and foreign files, modes, unlink on close), tcp_stream::connect_unix
// (missing path, refused, a full backlog with and without a timeout), streams over them, the
// peer's credentials, many connections, the HTTP server on a unix listener, and the fds left.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "corio/errors.hpp"
#include "corio/http/server.hpp"
#include "corio/io.hpp"
#include "corio/loop.hpp"
#include "corio/tcp.hpp"
#include "corio/timeout.hpp"
#include "support/backends.hpp"
#include "support/raw_sockets.hpp"

namespace {

using namespace std::chrono_literals;
using corio::connect_options;
using corio::event_loop;
using corio::stream_closed_error;
using corio::task;
using corio::tcp_listener;
using corio::tcp_stream;
using corio::unix_listen_options;
using corio::testing::open_fd_count;
using corio::testing::unique_fd;
using clock_type = std::chrono::steady_clock;

class UnixSocket : public corio::testing::backend_test {};
CORIO_INSTANTIATE_BACKENDS(UnixSocket);

std::error_code os_code(int err) { return {err, std::generic_category()}; }

using corio::testing::ms_since;

/// A fresh directory under /tmp, removed with everything in it at the end of the test.
struct temp_dir {
  temp_dir() {
    char pattern[] = "/tmp/corio-unix-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) corio::testing::throw_errno("mkdtemp");
    path = pattern;
  }
  ~temp_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
  std::string path;
};

/// An abstract name no other test (or run) uses.
std::string unique_abstract_name() {
  static std::atomic<int> counter{0};
  return "@corio-unix-test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

/// A socket file nobody listens on, as a crashed server leaves it: bound, then closed.
void make_stale_socket(const std::string& path) {
  unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) corio::testing::throw_errno("socket");
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  path.copy(a.sun_path, sizeof a.sun_path - 1);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    corio::testing::throw_errno("bind");
  }
}

/// Writes `line` on `from` and reads it back on `to`.
task<bool> passes_line(tcp_stream& from, tcp_stream& to, const char* line) {
  co_await from.write(line);
  std::string got = co_await to.read_until("\n");
  co_return got == line;
}

/// connect_unix to its end: the connected stream, or the stream_closed_error's code and text.
struct outcome {
  std::optional<tcp_stream> stream;
  std::optional<std::error_code> error;
  std::string message;
};
task<outcome> try_connect(std::string path, connect_options options = {}) {
  outcome out;
  try {
    tcp_stream s = co_await tcp_stream::connect_unix(path, options);
    out.stream.emplace(std::move(s));
  } catch (const stream_closed_error& e) {
    out.error = e.code();
    out.message = e.what();
  }
  co_return out;
}

// ------------------------------------------------------------------ streams over unix sockets

// A connection by path carries bytes both ways and ends as a TCP one does; the accessors
// that have no meaning on a unix socket answer as documented (empty endpoints, port 0), and
// the peer's credentials are this process's.
TEST_P(UnixSocket, EchoRoundTripByPath) {
  temp_dir dir;
  const int baseline = open_fd_count();
  run([](std::string path) -> task<void> {
    tcp_listener listener = tcp_listener::bind_unix(path);
    EXPECT_EQ(listener.unix_path(), path);
    EXPECT_EQ(listener.port(), 0);
    EXPECT_TRUE(listener.local_endpoint().address.empty());
    auto connecting = tcp_stream::connect_unix(path);
    tcp_stream server = co_await listener.accept();
    tcp_stream client = co_await std::move(connecting);
    EXPECT_TRUE(co_await passes_line(client, server, "ping\n"));
    EXPECT_TRUE(co_await passes_line(server, client, "pong\n"));
    client.set_nodelay(true);  // a no-op on unix sockets (S49)
    EXPECT_TRUE(client.local_endpoint().address.empty());
    EXPECT_TRUE(server.remote_endpoint().address.empty());
    const std::vector<tcp_stream*> both{&client, &server};
    for (tcp_stream* s : both) {
      std::optional<corio::unix_credentials> peer = s->peer_credentials();
      CO_ASSERT_TRUE(peer.has_value());
      EXPECT_EQ(peer->pid, ::getpid());
      EXPECT_EQ(peer->uid, ::getuid());
      EXPECT_EQ(peer->gid, ::getgid());
    }
    client.close();
    std::string rest = co_await server.read_until_close();
    EXPECT_EQ(rest, "");
    EXPECT_FALSE(client.peer_credentials().has_value()) << "closed";
  }(dir / "echo.sock"));
  EXPECT_EQ(open_fd_count(), baseline);
}

// SO_PEERCRED answers on TCP sockets too; peer_credentials() does not.
TEST_P(UnixSocket, PeerCredentials_NoneOnTcp) {
  run([]() -> task<void> {
    tcp_listener listener = tcp_listener::bind("127.0.0.1", 0);
    auto connecting = tcp_stream::connect("127.0.0.1", listener.port());
    tcp_stream server = co_await listener.accept();
    tcp_stream client = co_await std::move(connecting);
    EXPECT_FALSE(server.peer_credentials().has_value());
    EXPECT_FALSE(client.peer_credentials().has_value());
  }());
}

// A Linux abstract name: '@' (or a leading NUL) and no file anywhere.
TEST_P(UnixSocket, AbstractName_AtOrNulPrefix) {
  run([]() -> task<void> {
    const std::string name = unique_abstract_name();
    tcp_listener listener = tcp_listener::bind_unix(name);
    EXPECT_EQ(listener.unix_path(), name);
    EXPECT_FALSE(exists(name)) << "an abstract socket made a file in the working directory";
    const std::vector<std::string> paths{name, std::string(1, '\0') + name.substr(1)};
    for (const std::string& path : paths) {
      auto connecting = tcp_stream::connect_unix(path);
      tcp_stream server = co_await listener.accept();
      tcp_stream client = co_await std::move(connecting);
      EXPECT_TRUE(co_await passes_line(client, server, "abstract\n"));
    }
    // The name is free again once the listener is closed.
    listener.close();
    outcome out = co_await try_connect(name);
    EXPECT_EQ(out.error, os_code(ECONNREFUSED)) << out.message;
    tcp_listener again = tcp_listener::bind_unix(name);
    EXPECT_GE(again.native_handle(), 0);
  }());
}

// --------------------------------------------------------------------------- what is at the path

// A socket file that nobody listens on (a crashed server's) is replaced, as Tornado does.
TEST_P(UnixSocket, StaleSocketFileIsReplaced) {
  temp_dir dir;
  const std::string path = dir / "stale.sock";
  make_stale_socket(path);
  ASSERT_TRUE(exists(path));
  run([](std::string path) -> task<void> {
    tcp_listener listener = tcp_listener::bind_unix(path);
    auto connecting = tcp_stream::connect_unix(path);
    tcp_stream server = co_await listener.accept();
    tcp_stream client = co_await std::move(connecting);
    EXPECT_TRUE(co_await passes_line(client, server, "fresh\n"));
  }(path));
}

// A socket a server still listens on is not taken over (Tornado would remove it).
TEST_P(UnixSocket, LiveSocketIsNotTakenOver) {
  temp_dir dir;
  run([](std::string path) -> task<void> {
    tcp_listener first = tcp_listener::bind_unix(path);
    bool refused = false;
    try {
      tcp_listener second = tcp_listener::bind_unix(path);
    } catch (const corio::error& e) {
      refused = true;
      EXPECT_EQ(e.code(), os_code(EADDRINUSE)) << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
    EXPECT_TRUE(refused);
    // The first server still owns the path: the probe left it an accepted-then-closed
    // connection, then a real one works.
    tcp_stream probe = co_await first.accept();
    std::string sent = co_await probe.read_until_close();
    EXPECT_EQ(sent, "");
    auto connecting = tcp_stream::connect_unix(path);
    tcp_stream server = co_await first.accept();
    tcp_stream client = co_await std::move(connecting);
    EXPECT_TRUE(co_await passes_line(client, server, "still mine\n"));
  }(dir / "live.sock"));
}

// Two servers starting at once on one path (a restart overlapping the old instance, two
// supervisors): exactly one gets it, and the path leads to that one. bind_unix used to bind at
// the path before listen(): the other server's probe found the fresh socket refusing, took it
// for a crashed server's, removed it and bound its own, so both started and the first one was
// unreachable (about once in 400 rounds here). Half the rounds start from a stale file, which
// both servers see and try to remove. No temporary file is left behind.
TEST_P(UnixSocket, TwoServersBindingAtOnce_ExactlyOneGetsThePath) {
  temp_dir dir;
  const std::string path = dir / "race.sock";
  run([](std::string path, std::string dir) -> task<void> {
    int both = 0;
    int neither = 0;
    int unreachable = 0;
    for (int round = 0; round < 1000; ++round) {
      if (round % 2 == 0) make_stale_socket(path);
      std::atomic<int> arrived{0};
      std::optional<tcp_listener> listeners[2];
      std::string errors[2];
      auto start_server = [&](int i) {
        arrived.fetch_add(1);
        while (arrived.load() < 2) std::this_thread::yield();
        try {
          unix_listen_options options;
          options.mode = 0600;
          options.unlink_on_close = false;  // the rounds clean up themselves
          listeners[i].emplace(tcp_listener::bind_unix(path, options));
        } catch (const corio::error& e) {
          errors[i] = e.what();
        }
      };
      std::thread first(start_server, 0);
      std::thread second(start_server, 1);
      first.join();
      second.join();
      const int winners = (listeners[0] ? 1 : 0) + (listeners[1] ? 1 : 0);
      if (winners == 2) ++both;
      if (winners == 0) {
        ++neither;
        ADD_FAILURE() << "round " << round << ": " << errors[0] << " / " << errors[1];
      }
      if (winners == 1) {
        // The path leads to the winner: a connect is accepted there at once.
        tcp_listener& winner = listeners[0] ? *listeners[0] : *listeners[1];
        unique_fd client(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        path.copy(a.sun_path, sizeof a.sun_path - 1);
        if (::connect(client.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
          ++unreachable;
        } else {
          tcp_stream accepted = co_await corio::with_timeout(2s, winner.accept());
          (void)accepted;
        }
      }
      for (auto& listener : listeners) listener.reset();
      ::unlink(path.c_str());
      if (both + neither + unreachable > 0) break;
    }
    EXPECT_EQ(both, 0) << "both servers bound the path";
    EXPECT_EQ(unreachable, 0) << "the path did not lead to the server that got it";
    std::vector<std::string> left;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      left.push_back(entry.path().filename().string());
    }
    EXPECT_TRUE(left.empty()) << left.size() << " files left, the first " << left.front();
  }(path, dir.path));
}

// Anything but a socket at the path is an error, and is left exactly as it was.
TEST_P(UnixSocket, RegularFileAtPath_ThrowsAndLeavesItUntouched) {
  temp_dir dir;
  const int fds_before = open_fd_count();
  const std::string path = dir / "data.txt";
  std::ofstream(path) << "precious";
  run([](std::string path) -> task<void> {
    bool thrown = false;
    try {
      (void)tcp_listener::bind_unix(path);
    } catch (const corio::error& e) {
      thrown = true;
      EXPECT_EQ(e.code(), os_code(EEXIST)) << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
    EXPECT_TRUE(thrown);
    co_return;
  }(path));
  {
    std::ifstream in(path);
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(content, "precious");
  }
  EXPECT_THROW((void)tcp_listener::bind_unix(dir.path), corio::error) << "a directory";
  EXPECT_TRUE(std::filesystem::is_directory(dir.path));
  // The socket bound under a hidden name next to the path before it is linked there is gone.
  std::vector<std::string> left;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path)) {
    left.push_back(entry.path().filename().string());
  }
  EXPECT_EQ(left, std::vector<std::string>{"data.txt"});
  EXPECT_EQ(open_fd_count(), fds_before) << "fd leak";
}

// sun_path holds 107 bytes and the NUL: 107 binds, 108 is std::invalid_argument naming the
// path and the limit; the same for abstract names (107 bytes after the '@').
TEST_P(UnixSocket, PathLength_107Binds_108IsInvalidArgument) {
  temp_dir dir;
  std::string fits = dir / "";
  fits.append(107 - fits.size(), 'p');
  const std::string too_long = fits + "q";
  run([](std::string fits, std::string too_long) -> task<void> {
    tcp_listener listener = tcp_listener::bind_unix(fits);
    EXPECT_TRUE(exists(fits));
    auto connecting = tcp_stream::connect_unix(fits);
    tcp_stream server = co_await listener.accept();
    tcp_stream client = co_await std::move(connecting);
    EXPECT_TRUE(co_await passes_line(client, server, "long\n"));
    for (bool by_connect : {false, true}) {
      bool thrown = false;
      try {
        if (by_connect) {
          (void)tcp_stream::connect_unix(too_long);
        } else {
          (void)tcp_listener::bind_unix(too_long);
        }
      } catch (const std::invalid_argument& e) {
        thrown = true;
        EXPECT_NE(std::string(e.what()).find(too_long), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("107"), std::string::npos) << e.what();
      }
      EXPECT_TRUE(thrown) << (by_connect ? "connect_unix" : "bind_unix");
    }
    EXPECT_FALSE(exists(too_long));
    std::string abstract_fits = unique_abstract_name();  // '@' and 107 bytes
    abstract_fits.append(108 - abstract_fits.size(), 'a');
    tcp_listener abstract = tcp_listener::bind_unix(abstract_fits);
    EXPECT_GE(abstract.native_handle(), 0);
    EXPECT_THROW((void)tcp_listener::bind_unix("@" + std::string(108, 'x')), std::invalid_argument);
    EXPECT_THROW((void)tcp_listener::bind_unix(""), std::invalid_argument);
    EXPECT_THROW((void)tcp_stream::connect_unix(""), std::invalid_argument);
  }(fits, too_long));
}

// The mode is applied to the socket file; it has no meaning for an abstract name.
TEST_P(UnixSocket, ModeIsApplied) {
  temp_dir dir;
  run([](std::string dir) -> task<void> {
    const std::vector<int> modes{0660, 0600, 0666};
    for (int mode : modes) {
      const std::string path = dir + "/mode-" + std::to_string(mode) + ".sock";
      unix_listen_options options;
      options.mode = mode;
      tcp_listener listener = tcp_listener::bind_unix(path, options);
      struct stat st {};
      CO_ASSERT_TRUE(::stat(path.c_str(), &st) == 0);
      EXPECT_TRUE(S_ISSOCK(st.st_mode));
      EXPECT_EQ(st.st_mode & 07777, static_cast<unsigned>(mode)) << path;
    }
    unix_listen_options options;
    options.mode = 0660;
    EXPECT_THROW((void)tcp_listener::bind_unix(unique_abstract_name(), options),
                 std::invalid_argument);
    options.mode = 010000;
    EXPECT_THROW((void)tcp_listener::bind_unix(dir + "/bad-mode.sock", options),
                 std::invalid_argument);
    co_return;
  }(dir.path));
}

// close() and the destructor remove the socket file (unlink_on_close, the default), but not
// one another server has put at the path since; unlink_on_close = false leaves it.
TEST_P(UnixSocket, CloseRemovesTheSocketFileAsDocumented) {
  temp_dir dir;
  run([](std::string dir) -> task<void> {
    const std::string path = dir + "/close.sock";
    tcp_listener listener = tcp_listener::bind_unix(path);
    EXPECT_TRUE(exists(path));
    listener.close();
    EXPECT_FALSE(exists(path)) << "close()";
    {
      tcp_listener scoped = tcp_listener::bind_unix(path);
      EXPECT_TRUE(exists(path));
    }
    EXPECT_FALSE(exists(path)) << "the destructor";

    unix_listen_options keep;
    keep.unlink_on_close = false;
    listener = tcp_listener::bind_unix(path, keep);
    listener.close();
    EXPECT_TRUE(exists(path)) << "unlink_on_close = false";
    outcome out = co_await try_connect(path);
    EXPECT_EQ(out.error, os_code(ECONNREFUSED)) << out.message;

    // A newer server replaced our (now stale) socket: closing ours leaves its file.
    listener = tcp_listener::bind_unix(path);
    tcp_listener newer;
    {
      ::unlink(path.c_str());
      newer = tcp_listener::bind_unix(path);
    }
    listener.close();
    EXPECT_TRUE(exists(path)) << "close() removed another listener's socket";
    auto connecting = tcp_stream::connect_unix(path);
    tcp_stream server = co_await newer.accept();
    tcp_stream client = co_await std::move(connecting);
    EXPECT_TRUE(co_await passes_line(client, server, "newer\n"));
  }(dir.path));
}

// ------------------------------------------------------------------------- connect failures

// No file at the path: stream_closed_error with ENOENT naming the path; no fd left.
TEST_P(UnixSocket, ConnectToMissingPath_ENOENT) {
  temp_dir dir;
  const int baseline = open_fd_count();
  run([](std::string path) -> task<void> {
    outcome out = co_await try_connect(path);
    EXPECT_FALSE(out.stream.has_value());
    EXPECT_EQ(out.error, os_code(ENOENT)) << out.message;
    EXPECT_NE(out.message.find(path), std::string::npos) << out.message;
    out = co_await try_connect(unique_abstract_name());
    EXPECT_EQ(out.error, os_code(ECONNREFUSED)) << "abstract: " << out.message;
  }(dir / "missing.sock"));
  EXPECT_EQ(open_fd_count(), baseline);
}

// A socket file nobody listens on: ECONNREFUSED.
TEST_P(UnixSocket, ConnectToStaleSocket_ECONNREFUSED) {
  temp_dir dir;
  const std::string path = dir / "refusing.sock";
  make_stale_socket(path);
  const int baseline = open_fd_count();
  run([](std::string path) -> task<void> {
    outcome out = co_await try_connect(path);
    EXPECT_EQ(out.error, os_code(ECONNREFUSED)) << out.message;
    EXPECT_NE(out.message.find(path), std::string::npos) << out.message;
  }(path));
  EXPECT_EQ(open_fd_count(), baseline);
}

// A listener with backlog 0 holds one unaccepted connection; the next connect waits for room
// (it does not report a connection that does not exist, as epoll's writability would) and
// gets it once the server accepts.
TEST_P(UnixSocket, FullBacklog_ConnectWaitsUntilTheServerAccepts) {
  temp_dir dir;
  run(
      [](std::string path) -> task<void> {
        unix_listen_options options;
        options.backlog = 0;
        tcp_listener listener = tcp_listener::bind_unix(path, options);
        tcp_stream first = co_await tcp_stream::connect_unix(path);
        auto waiting = tcp_stream::connect_unix(path);
        co_await corio::sleep_for(30ms);
        tcp_stream first_server = co_await listener.accept();
        tcp_stream second_server = co_await listener.accept();
        tcp_stream second = co_await std::move(waiting);
        EXPECT_TRUE(co_await passes_line(first, first_server, "one\n"));
        EXPECT_TRUE(co_await passes_line(second, second_server, "two\n"));
        EXPECT_TRUE(co_await passes_line(second_server, second, "back\n"));
      }(dir / "backlog.sock"),
      5s);
}

// The same wait ends with timeout_error at connect_options::timeout, and its socket is closed.
TEST_P(UnixSocket, FullBacklog_ConnectTimesOut) {
  temp_dir dir;
  const int baseline = open_fd_count();
  run([](std::string path) -> task<void> {
    unix_listen_options options;
    options.backlog = 0;
    tcp_listener listener = tcp_listener::bind_unix(path, options);
    tcp_stream first = co_await tcp_stream::connect_unix(path);
    const int before = open_fd_count();
    connect_options connect;
    connect.timeout = 150ms;
    const auto start = clock_type::now();
    bool timed_out = false;
    std::string message;
    try {
      tcp_stream second = co_await tcp_stream::connect_unix(path, connect);
    } catch (const corio::timeout_error& e) {
      timed_out = true;
      message = e.what();
    }
    EXPECT_TRUE(timed_out);
    // Named like the TCP connect's timeout: the path and the limit.
    EXPECT_NE(message.find("\"" + path + "\": not connected within 150 ms"), std::string::npos)
        << message;
    EXPECT_GE(ms_since(start), 140.0);
    EXPECT_LT(ms_since(start), 2000.0);
    EXPECT_EQ(open_fd_count(), before) << "the timed-out attempt's socket is still open";
  }(dir / "timeout.sock"));
  EXPECT_EQ(open_fd_count(), baseline);
}

// The backend's io::connect on epoll: a full unix backlog completes with -EAGAIN instead of
// waiting for writability, which an unconnected unix socket reports at once (a connection
// that does not exist). io_uring waits for room in the kernel instead (io.hpp).
TEST_P(UnixSocket, IoConnect_FullBacklog_EpollCompletesWithEAGAIN) {
  if (GetParam() != corio::backend::epoll) {
    GTEST_SKIP() << "io_uring waits for room in the kernel, where a cancel may hang";
  }
  temp_dir dir;
  run([](std::string path) -> task<void> {
    unix_listen_options options;
    options.backlog = 0;
    tcp_listener listener = tcp_listener::bind_unix(path, options);
    tcp_stream first = co_await tcp_stream::connect_unix(path);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CO_ASSERT_TRUE(fd >= 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    path.copy(a.sun_path, sizeof a.sun_path - 1);
    const int result =
        co_await corio::io::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a);
    EXPECT_EQ(result, -EAGAIN);
    corio::io::close(fd);
  }(dir / "io.sock"));
}

// ------------------------------------------------------------------------------ at scale

/// Echoes lines until the peer closes; counts itself in `ended` when it ends.
task<void> echo_lines(tcp_stream s, int& ended) {
  try {
    for (;;) {
      std::string line = co_await s.read_until("\n");
      co_await s.write(line);
    }
  } catch (const stream_closed_error&) {
  }
  s.close();
  ++ended;
}

task<void> accept_and_echo(tcp_listener& listener, int count, int& ended) {
  for (int i = 0; i < count; ++i) {
    tcp_stream s = co_await listener.accept();
    event_loop::current().spawn(echo_lines(std::move(s), ended));
  }
}

// 200 connections by path, all open at once, each echoed; every fd is released afterwards.
TEST_P(UnixSocket, ManyConnectionsAcceptedAndEchoed) {
  temp_dir dir;
  const int baseline = open_fd_count();
  run([](std::string path) -> task<void> {
    constexpr int count = 200;
    tcp_listener listener = tcp_listener::bind_unix(path);
    int ended = 0;
    event_loop::current().spawn(accept_and_echo(listener, count, ended));
    std::vector<task<tcp_stream>> connecting;
    for (int i = 0; i < count; ++i) connecting.push_back(tcp_stream::connect_unix(path));
    std::vector<tcp_stream> clients;
    for (auto& c : connecting) {
      tcp_stream client = co_await std::move(c);
      clients.push_back(std::move(client));
    }
    for (int i = 0; i < count; ++i) {
      const std::string line = "line " + std::to_string(i) + "\n";
      co_await clients[i].write(line);
    }
    int echoed = 0;
    for (int i = 0; i < count; ++i) {
      std::string line = co_await clients[i].read_until("\n");
      if (line == "line " + std::to_string(i) + "\n") ++echoed;
    }
    EXPECT_EQ(echoed, count);
    clients.clear();  // the echo coroutines see EOF and end
    while (ended < count) co_await corio::sleep_for(1ms);
  }(dir / "many.sock"));
  EXPECT_EQ(open_fd_count(), baseline);
}

// ------------------------------------------------------------------------------ HTTP

task<void> serve_and_flag(corio::http::server& server, tcp_listener& listener, bool& done) {
  co_await server.serve(listener);
  done = true;
}

// http::server::serve takes a unix listener unchanged: one raw request, one response.
TEST_P(UnixSocket, HttpServerServesARequestOverAUnixSocket) {
  temp_dir dir;
  run([](std::string path) -> task<void> {
    corio::http::server server([](corio::http::request& req) -> task<corio::http::response> {
      co_return corio::http::response::text(200, "hello " + req.target);
    });
    tcp_listener listener = tcp_listener::bind_unix(path);
    bool done = false;
    event_loop::current().spawn(serve_and_flag(server, listener, done));
    tcp_stream client = co_await tcp_stream::connect_unix(path);
    co_await client.write(
        "GET /over-unix HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    std::string response = co_await corio::with_timeout(5s, client.read_until_close());
    EXPECT_EQ(response.rfind("HTTP/1.1 200", 0), 0u) << response;
    EXPECT_NE(response.find("\r\n\r\nhello /over-unix"), std::string::npos) << response;
    server.shutdown();
    while (!done) co_await corio::sleep_for(1ms);
    EXPECT_EQ(server.requests_served(), 1u);
  }(dir / "http.sock"));
}

}  // namespace
