// Stream rules S1-S45 and deviations D1-D5, D7-D9 of stream-semantics.md, one test (at least)
// per rule, on both backends, over a unix socket pair and loopback TCP where it matters.
//
// Chunking is controlled from the peer side: a raw (blocking) fd peer puts exactly the bytes
// we want in the kernel before the stream reads, and small max_buffer_size / read_chunk_size
// values fix how many bytes one transport read takes (S2).
//
// Writes issued during a loop turn leave gathered at the end of that turn (a deliberate
// design), so these tests never expect a non-empty write to be complete at the call (the
// "inline send" half of S29/S7); they rely on it instead to keep bytes unsent within a turn
// (S31, S36, S41). write("") with nothing pending is ready at once (S30).
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstring>
#include <exception>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "corio/corio.hpp"
#include "support/backends.hpp"

using namespace corio;
using namespace std::chrono_literals;

namespace {

enum class transport { unix_pair, tcp };
constexpr transport all_transports[] = {transport::unix_pair, transport::tcp};
const char* name(transport t) { return t == transport::tcp ? "tcp" : "unix_pair"; }

std::error_code os(int e) { return {e, std::generic_category()}; }
std::error_code none() { return {}; }

stream_options with_max_buffer(std::size_t n) {
  stream_options o;
  o.max_buffer_size = n;
  return o;
}
stream_options with_chunk(std::size_t n) {
  stream_options o;
  o.read_chunk_size = n;
  return o;
}

std::string pattern_bytes(std::size_t n, unsigned seed = 1) {
  // A 4 KiB random block repeated at a prime stride: cheap for 32 MiB in a debug build,
  // and no two nearby offsets hold the same byte sequence.
  std::string block(4093, '\0');
  std::mt19937 rng(seed);
  for (char& c : block) c = static_cast<char>('a' + rng() % 26);
  std::string s;
  s.reserve(n);
  while (s.size() < n) s.append(block, 0, std::min(block.size(), n - s.size()));
  return s;
}

// ------------------------------------------------------------------ loop helpers

/// Lets the loop run a few turns.
task<void> turns(int n = 3) {
  for (int i = 0; i < n; ++i) co_await sleep_for(0ns);
}

/// Waits (bounded) until pred() holds; false on expiry.
template <class P>
task<bool> eventually(P pred, std::chrono::milliseconds limit = 3s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) co_return false;
    co_await sleep_for(1ms);
  }
  co_return true;
}

/// Runs `f()` (a call returning a task) and awaits its task, both inside one try (S5, D7):
/// the error, or nullptr if it succeeded.
template <class F>
task<std::exception_ptr> failure_of(F f) {
  try {
    co_await f();
  } catch (...) {
    co_return std::current_exception();
  }
  co_return nullptr;
}

template <class E>
std::optional<E> as(const std::exception_ptr& p) {
  if (!p) return std::nullopt;
  try {
    std::rethrow_exception(p);
  } catch (const E& e) {
    return e;
  } catch (...) {
  }
  return std::nullopt;
}

std::string describe(const std::exception_ptr& p) {
  if (!p) return "no error";
  try {
    std::rethrow_exception(p);
  } catch (const corio::error& e) {
    return std::string("corio::error(") + e.what() + ", code " + e.code().message() + ")";
  } catch (const std::exception& e) {
    return std::string("std::exception(") + e.what() + ")";
  } catch (...) {
    return "unknown exception";
  }
}

::testing::AssertionResult closed_with(const std::exception_ptr& p, std::error_code code) {
  auto e = as<stream_closed_error>(p);
  if (!e)
    return ::testing::AssertionFailure() << "expected stream_closed_error, got " << describe(p);
  if (e->code() != code) {
    return ::testing::AssertionFailure()
           << "expected code " << code.category().name() << ":" << code.value() << " ("
           << code.message() << "), got " << describe(p);
  }
  return ::testing::AssertionSuccess();
}

template <class E>
::testing::AssertionResult failed_with(const std::exception_ptr& p) {
  if (as<E>(p)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "wrong error: " << describe(p);
}

/// Awaits `op` and appends "<tag>:ok", "<tag>:closed" or "<tag>:other" to *log.
template <class T>
task<void> log_op(task<T> op, std::vector<std::string>* log, std::string tag) {
  try {
    co_await std::move(op);
    log->push_back(tag + ":ok");
  } catch (const stream_closed_error&) {
    log->push_back(tag + ":closed");
  } catch (...) {
    log->push_back(tag + ":other");
  }
}

// ------------------------------------------------------------------ transports

/// A raw blocking fd: the peer whose writes decide exactly what the stream can read.
class raw_fd {
 public:
  raw_fd() = default;
  explicit raw_fd(int fd) : fd_(fd) {}
  raw_fd(raw_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  raw_fd& operator=(raw_fd&& o) noexcept {
    if (this != &o) {
      close();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~raw_fd() { close(); }
  int get() const { return fd_; }

  void send(std::string_view data) const {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ADD_FAILURE() << "raw send failed: " << std::strerror(errno);
        return;
      }
      data.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  /// Reads until n bytes or EOF or 2 s without data.
  std::string recv(std::size_t n) const {
    std::string out;
    while (out.size() < n) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 2000) <= 0) break;
      char buf[65536];
      ssize_t r = ::recv(fd_, buf, std::min(sizeof buf, n - out.size()), 0);
      if (r <= 0) break;
      out.append(buf, static_cast<std::size_t>(r));
    }
    return out;
  }
  /// True if the peer closed (EOF) within 2 s, with no data before it.
  bool sees_eof() const {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 2000) <= 0) return false;
    char c;
    return ::recv(fd_, &c, 1, 0) == 0;
  }
  void shutdown_write() const { ::shutdown(fd_, SHUT_WR); }
  /// Closes with SO_LINGER{1,0}: the peer gets a RST (TCP only).
  void reset() {
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close();
  }
  void close() {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  }

 private:
  int fd_ = -1;
};

/// Two connected streams (a: client side, b: server side).
struct duo {
  tcp_stream a;
  tcp_stream b;
};

task<duo> connected(transport t, stream_options options = {}) {
  if (t == transport::unix_pair) {
    auto [a, b] = stream_pair(options);
    co_return duo{std::move(a), std::move(b)};
  }
  auto listener = tcp_listener::bind("127.0.0.1", 0);
  connect_options co;
  co.stream = options;
  co.nodelay = true;
  auto client = tcp_stream::connect("127.0.0.1", listener.port(), co);
  tcp_stream server = co_await listener.accept(options);
  server.set_nodelay(true);
  tcp_stream c = co_await std::move(client);
  co_return duo{std::move(c), std::move(server)};
}

/// A stream and a raw blocking fd on the other end.
struct peered {
  tcp_stream s;
  raw_fd peer;
};

task<peered> with_raw_peer(transport t, stream_options options = {}) {
  if (t == transport::unix_pair) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
      throw std::runtime_error("socketpair failed");
    }
    co_return peered{tcp_stream(fds[0], options), raw_fd(fds[1])};
  }
  auto listener = tcp_listener::bind("127.0.0.1", 0);
  raw_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(listener.port());
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // Blocking connect to a listening loopback socket completes from the backlog at once.
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sin), sizeof sin) != 0) {
    throw std::runtime_error(std::string("raw connect failed: ") + std::strerror(errno));
  }
  tcp_stream s = co_await listener.accept(options);
  s.set_nodelay(true);
  co_return peered{std::move(s), std::move(fd)};
}

class stream_test : public corio::testing::backend_test {
 protected:
  /// Runs make(t) for each transport, each on a fresh loop, bounded by `limit`.
  template <class F>
  void each_transport(F make, std::chrono::milliseconds limit = 10s) {
    for (transport t : all_transports) {
      SCOPED_TRACE(std::string("transport=") + name(t));
      run(make(t), limit);
    }
  }
};

// ================================================================== 1. Construction (S1-S3)

TEST_P(stream_test, Options_MaxBufferSizeDefaultsTo100MiB_S1) {
  run([]() -> task<void> {
    auto [a, b] = stream_pair();
    EXPECT_EQ(a.options().max_buffer_size, 104857600u);
    auto [c, d] = stream_pair(with_max_buffer(0));
    EXPECT_EQ(c.options().max_buffer_size, 104857600u);
    auto [e, f] = stream_pair(with_max_buffer(1000));
    EXPECT_EQ(e.options().max_buffer_size, 1000u);
    co_return;
  }());
}

TEST_P(stream_test, Options_ReadChunkSizeDefaultAndClamp_S2) {
  run([]() -> task<void> {
    {
      auto [a, b] = stream_pair(with_chunk(0));
      EXPECT_EQ(a.options().read_chunk_size, 65536u);
    }
    {
      auto [a, b] = stream_pair(with_max_buffer(100));
      EXPECT_EQ(a.options().read_chunk_size, 50u);
    }
    {
      stream_options o;
      o.max_buffer_size = 100;
      o.read_chunk_size = 10;
      auto [a, b] = stream_pair(o);
      EXPECT_EQ(a.options().read_chunk_size, 10u);
      o.read_chunk_size = 1000;
      auto [c, d] = stream_pair(o);
      EXPECT_EQ(c.options().read_chunk_size, 50u);
    }
    co_return;
  }());
}

TEST_P(stream_test, ReadChunkSize_OneTransportReadTakesAtMostChunk_S2) {
  each_transport([](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t, with_max_buffer(100));  // chunks of 50
    p.peer.send(std::string(200, 'x'));
    std::string one = co_await p.s.read_bytes(1, true);
    EXPECT_EQ(one, "x");
    EXPECT_EQ(p.s.buffered_bytes(), 49u);
    co_await turns();
    EXPECT_EQ(p.s.buffered_bytes(), 49u);  // and no read ahead (S11, S45)
    EXPECT_FALSE(p.s.closed());
  });
}

TEST_P(stream_test, Peek_ShowsBufferedBytesWithoutConsumingOrReadingAhead) {
  each_transport([](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t, with_chunk(4));
    EXPECT_EQ(p.s.peek(), "");
    p.peer.send("abcdefgh\nXYZ+more");
    // Reads of 4: "abcd" "efgh" "\nXYZ": the read ends there and the rest stays unread.
    std::string line = co_await p.s.read_until("\n");
    EXPECT_EQ(line, "abcdefgh\n");
    EXPECT_EQ(p.s.peek(), "XYZ");
    co_await turns(5);
    EXPECT_EQ(p.s.peek(), "XYZ");  // peeking reads nothing from the transport (S45)
    std::string two = co_await p.s.read_bytes(2);
    EXPECT_EQ(two, "XY");
    EXPECT_EQ(p.s.peek(), "Z");
    p.s.close();
    EXPECT_EQ(p.s.peek(), "Z");  // what a close keeps (S39)
    EXPECT_EQ(stream().peek(), "");
  });
}

TEST_P(stream_test, NativeHandle_IsTheTransportsFdUntilTheStreamCloses) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    const int fd = d.a.native_handle();
    CO_ASSERT_TRUE(fd >= 0);
    // A socket option corio does not wrap (Tornado: stream.fileno(); Asio: native_handle()).
    int on = 1;
    EXPECT_EQ(::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on), 0);
    int got = 0;
    socklen_t len = sizeof got;
    EXPECT_EQ(::getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &got, &len), 0);
    EXPECT_EQ(got, 1);
    EXPECT_NE(d.b.native_handle(), fd);
    d.a.write("ping\n");  // the stream still works after
    std::string line = co_await d.b.read_until("\n");
    EXPECT_EQ(line, "ping\n");
    d.a.close();
    EXPECT_EQ(d.a.native_handle(), -1);  // closed: the number may name another file soon
    std::string rest = co_await d.b.read_until_close();  // closed by the peer's EOF (S35)
    EXPECT_EQ(rest, "");
    EXPECT_EQ(d.b.native_handle(), -1);
    EXPECT_EQ(stream().native_handle(), -1);
  });
  run([]() -> task<void> {
    auto [r, w] = corio::make_pipe();
    CO_ASSERT_TRUE(r.native_handle() >= 0);
    EXPECT_EQ(::fcntl(w.native_handle(), F_GETFL) & O_ACCMODE, O_WRONLY);
    co_return;
  }());
}

TEST_P(stream_test, Options_MaxWriteBufferSizeUnlimitedByDefault_S3) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    EXPECT_EQ(d.a.options().max_write_buffer_size, 0u);
    std::string big(4 << 20, 'w');
    auto w1 = d.a.write(big);  // nothing sent yet: 4 MiB + 4 MiB unsent is fine
    auto w2 = d.a.write(big);
    std::string got = co_await d.b.read_bytes(big.size() * 2);
    EXPECT_EQ(got.size(), big.size() * 2);
    co_await w1;
    co_await w2;
  });
}

// ================================================================== 2. Every op (S4-S7)

TEST_P(stream_test, Ops_StartWhenCalledNotWhenAwaited_S4) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    // Reads registered before the data exists still receive it; awaited later.
    auto r = d.b.read_until("\n");
    d.a.write("a");  // dropped tasks: still sent, in call order
    d.a.write(std::string("b"));
    { auto w = d.a.write("c\n"); }
    CO_ASSERT_TRUE(co_await eventually([&] { return r.is_ready(); }));
    std::string line = co_await r;
    EXPECT_EQ(line, "abc\n");
  });
}

TEST_P(stream_test, Errors_KnownAtCallSurfaceByAwaitAndChangeNothing_S5) {
  each_transport([](transport t) -> task<void> {
    stream_options o;
    o.max_write_buffer_size = 4;
    auto d = co_await connected(t, o);
    // Already reading: the first read is untouched.
    auto first = d.b.read_bytes(3);
    auto e = co_await failure_of([&] { return d.b.read_bytes(1); });
    EXPECT_TRUE(failed_with<std::logic_error>(e));
    EXPECT_TRUE(d.b.reading());
    // Write buffer full: nothing queued.
    e = co_await failure_of([&] { return d.a.write("12345"); });
    EXPECT_TRUE(failed_with<stream_buffer_full_error>(e));
    EXPECT_FALSE(d.a.writing());
    co_await d.a.write("xyz");
    EXPECT_EQ(co_await std::move(first), "xyz");
    // Closed: write and read fail, no op left registered.
    d.a.close();
    e = co_await failure_of([&] { return d.a.write("x"); });
    EXPECT_TRUE(closed_with(e, none()));
    e = co_await failure_of([&] { return d.a.read_bytes(1); });
    EXPECT_TRUE(closed_with(e, none()));
    EXPECT_FALSE(d.a.reading());
    EXPECT_FALSE(d.a.writing());
  });
}

TEST_P(stream_test, NoReentrancy_ContinuationsRunFromLoopInCompletionOrder_S6) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    std::vector<std::string> log;
    d.b.set_close_callback([&log] { log.push_back("callback"); });
    auto w1 = corio::start(log_op(d.b.write("1"), &log, "w1"));
    auto w2 = corio::start(log_op(d.b.write("2"), &log, "w2"));
    co_await std::move(w2);
    EXPECT_EQ(log, (std::vector<std::string>{"w1:ok", "w2:ok"}));
    log.clear();
    auto r = corio::start(log_op(d.b.read_bytes(5), &log, "read"));
    auto w3 = corio::start(log_op(d.b.write("3"), &log, "w3"));
    d.b.close();
    // Nothing ran inside write() or close().
    EXPECT_TRUE(log.empty());
    co_await std::move(r);
    co_await std::move(w3);
    co_await turns();
    // close() sent "3" first (its one non-blocking send, S36), so w3 completed before the
    // close failed the read; continuations run in that order.
    EXPECT_EQ(log, (std::vector<std::string>{"w3:ok", "read:closed", "callback"}));
  });
}

TEST_P(stream_test, ReadsServedFromBuffer_ReadyAtCall_S7) {
  run([]() -> task<void> {
    auto [a, b] = stream_pair();
    co_await a.write("abcdefghij\nk1k2");
    std::string first = co_await b.read_bytes(1);  // pulls the rest into the buffer
    EXPECT_EQ(first, "a");
    CO_ASSERT_TRUE(b.buffered_bytes() == 14u);
    auto r1 = b.read_bytes(2);
    EXPECT_TRUE(r1.is_ready());
    EXPECT_EQ(co_await r1, "bc");
    auto r2 = b.read_until("\n");
    EXPECT_TRUE(r2.is_ready());
    EXPECT_EQ(co_await r2, "defghij\n");
    auto r3 = b.read_until_regex("k[0-9]");
    EXPECT_TRUE(r3.is_ready());
    EXPECT_EQ(co_await r3, "k1");
    char buf[1];
    auto r4 = b.read_into(std::as_writable_bytes(std::span(buf)));
    EXPECT_TRUE(r4.is_ready());
    EXPECT_EQ(co_await r4, 1u);
    auto r5 = b.read_bytes(10, true);
    EXPECT_TRUE(r5.is_ready());
    EXPECT_EQ(co_await r5, "2");
    auto w = a.write("");  // nothing pending: a barrier that is already passed
    EXPECT_TRUE(w.is_ready());
    co_await w;
  }());
}

// ================================================================== 3. Reads (S8-S13)

TEST_P(stream_test, SecondConcurrentRead_LogicErrorFirstUnaffected_S8) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    auto first = d.b.read_until("\n");
    std::byte span[4];
    std::vector<std::exception_ptr> errors;  // no co_await in a braced list: g++ 12 miscompiles it
    errors.push_back(co_await failure_of([&] { return d.b.read_until("x"); }));
    errors.push_back(co_await failure_of([&] { return d.b.read_until_regex("x"); }));
    errors.push_back(co_await failure_of([&] { return d.b.read_bytes(1); }));
    errors.push_back(co_await failure_of([&] { return d.b.read_bytes(0); }));
    errors.push_back(co_await failure_of([&] { return d.b.read_bytes(1, true); }));
    errors.push_back(co_await failure_of([&] { return d.b.read_into(span); }));
    errors.push_back(co_await failure_of([&] { return d.b.read_until_close(); }));
    for (const auto& e : errors) {
      EXPECT_TRUE(failed_with<std::logic_error>(e));
      if (auto le = as<std::logic_error>(e)) {
        EXPECT_NE(std::string(le->what()).find("already reading"), std::string::npos) << le->what();
      }
    }
    EXPECT_TRUE(d.b.reading());
    EXPECT_FALSE(d.b.closed());
    co_await d.a.write("line\nrest");
    EXPECT_EQ(co_await std::move(first), "line\n");
    EXPECT_FALSE(d.b.reading());
    std::string rest = co_await d.b.read_bytes(4);
    EXPECT_EQ(rest, "rest");
  });
}

TEST_P(stream_test, ClosedStream_ServesLeftoverBuffer_S9) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    co_await d.a.write("hello world\nmore");
    std::string h = co_await d.b.read_bytes(5);
    EXPECT_EQ(h, "hello");
    CO_ASSERT_TRUE(d.b.buffered_bytes() == 11u);
    d.b.close();
    auto r = d.b.read_until("\n");
    EXPECT_TRUE(r.is_ready());
    EXPECT_EQ(co_await r, " world\n");
    auto r2 = d.b.read_bytes(2);
    EXPECT_TRUE(r2.is_ready());
    EXPECT_EQ(co_await r2, "mo");
    auto r3 = d.b.read_until_regex("e$");
    EXPECT_TRUE(r3.is_ready());
    EXPECT_EQ(co_await r3, "re");
  });
}

TEST_P(stream_test, ClosedStream_UnsatisfiableReadFailsAtOnceBufferKept_S10) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    co_await d.a.write("abc");
    std::string a = co_await d.b.read_bytes(1);
    EXPECT_EQ(a, "a");
    d.b.close(os(ECONNABORTED));
    std::byte span[5];
    std::vector<std::exception_ptr> errors;  // no co_await in a braced list: g++ 12 miscompiles it
    errors.push_back(co_await failure_of([&] { return d.b.read_bytes(5); }));
    errors.push_back(co_await failure_of([&] { return d.b.read_until("\n"); }));
    errors.push_back(co_await failure_of([&] { return d.b.read_until_regex("z"); }));
    errors.push_back(co_await failure_of([&] { return d.b.read_into(span); }));
    for (const auto& e : errors) EXPECT_TRUE(closed_with(e, os(ECONNABORTED)));
    EXPECT_EQ(d.b.buffered_bytes(), 2u);
    EXPECT_FALSE(d.b.reading());
    std::string rest = co_await d.b.read_bytes(2);
    EXPECT_EQ(rest, "bc");
    // Empty buffer, clean close: the code is empty.
    d.a.close();
    auto e = co_await failure_of([&] { return d.a.read_bytes(1, true); });
    EXPECT_TRUE(closed_with(e, none()));
  });
}

TEST_P(stream_test, ClosedStreamReadWithMaxBytes_FailsWithStreamError_S10) {
  // A max_bytes read that the leftover buffer cannot satisfy on an already closed stream is
  // an S10 failure: stream_closed_error{error()}, and error() stays what it was.
  run([]() -> task<void> {
    auto p = co_await with_raw_peer(transport::unix_pair);
    p.peer.send("Xabcdefgh");
    std::string x = co_await p.s.read_bytes(1);
    EXPECT_EQ(x, "X");
    p.s.close();
    auto e = co_await failure_of([&] { return p.s.read_until("\n", 4); });
    EXPECT_TRUE(closed_with(e, none()));
    EXPECT_EQ(p.s.error(), none());
    EXPECT_EQ(p.s.buffered_bytes(), 8u);
    EXPECT_FALSE(p.s.reading());
  }());
}

TEST_P(stream_test, ClosedStreamFailedRead_ReleasesSlot_D1) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    co_await d.a.write("partial");
    d.a.close();
    // The stream sees the data, then EOF while the read is pending.
    auto e = co_await failure_of([&] { return d.b.read_bytes(100); });
    EXPECT_TRUE(closed_with(e, none()));
    EXPECT_TRUE(d.b.closed());
    EXPECT_FALSE(d.b.reading());
    // Failing again on the closed stream still frees the slot (Tornado keeps it taken).
    e = co_await failure_of([&] { return d.b.read_until("\n"); });
    EXPECT_TRUE(closed_with(e, none()));
    EXPECT_FALSE(d.b.reading());
    std::string rest = co_await d.b.read_until_close();
    EXPECT_EQ(rest, "partial");
  });
}

TEST_P(stream_test, TransportReads_ReevaluateEachChunkAndStopWhenSatisfied_S11) {
  each_transport([](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t, with_chunk(4));
    p.peer.send("abcdefgh\nXYZ+more");
    // Reads of 4: "abcd" "efgh" "\nXYZ" -> complete after the third append.
    std::string line = co_await p.s.read_until("\n");
    EXPECT_EQ(line, "abcdefgh\n");
    EXPECT_EQ(p.s.buffered_bytes(), 3u);
    co_await turns(5);
    EXPECT_EQ(p.s.buffered_bytes(), 3u);  // no read while no read is pending
    std::string rest = co_await p.s.read_bytes(8);
    EXPECT_EQ(rest, "XYZ+more");
  });
}

task<void> chunked_writer(tcp_stream* s, std::string data, unsigned seed) {
  std::mt19937 rng(seed);
  std::size_t at = 0;
  while (at < data.size()) {
    std::size_t n = std::min<std::size_t>(1 + rng() % 300, data.size() - at);
    auto w = s->write(std::string_view(data).substr(at, n));
    if (rng() % 3 != 0) co_await w;  // sometimes not awaited: S28 still orders the bytes
    at += n;
  }
  co_await s->write("");
  s->close();
}

TEST_P(stream_test, MixedReads_NeverReorderDuplicateOrDrop_S12) {
  for (std::size_t chunk : {std::size_t{1}, std::size_t{3}, std::size_t{97}}) {
    SCOPED_TRACE("read_chunk_size=" + std::to_string(chunk));
    each_transport([chunk](transport t) -> task<void> {
      auto d = co_await connected(t, with_chunk(chunk));
      std::string data;
      std::mt19937 rng(static_cast<unsigned>(chunk) + 7);
      while (data.size() < 6000) data += static_cast<char>("abc\n"[rng() % 4]);
      auto writer = corio::start(chunked_writer(&d.a, data, 11));
      std::string got;
      try {
        for (int i = 0;; ++i) {
          switch (rng() % 6) {
            case 0:
              got += co_await d.b.read_until("\n");
              break;
            case 1:
              got += co_await d.b.read_until("c\n");
              break;
            case 2:
              got += co_await d.b.read_bytes(1 + rng() % 50);
              break;
            case 3:
              got += co_await d.b.read_bytes(1 + rng() % 50, true);
              break;
            case 4:
              got += co_await d.b.read_until_regex("b+a");
              break;
            case 5: {
              char buf[40];
              std::size_t n = co_await d.b.read_into(std::as_writable_bytes(std::span(buf)), true);
              got.append(buf, n);
              break;
            }
          }
        }
      } catch (const stream_closed_error&) {
      }
      got += co_await d.b.read_until_close();
      co_await std::move(writer);
      EXPECT_EQ(got.size(), data.size());
      EXPECT_TRUE(got == data);
    });
  }
}

TEST_P(stream_test, WithTimeout_ReadServedFromBufferPassesThroughWithoutATimer_S7) {
  // A read served from the buffer is decided at the call (S7): with_timeout hands that task
  // back as it is. No timer is armed, so even a zero limit cannot expire, and nothing is
  // allocated.
  each_transport([](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t);
    p.peer.send("one\ntwo\n");
    std::string first = co_await p.s.read_until("\n");
    EXPECT_EQ(p.s.buffered_bytes(), 4u);
    const auto blocks_before = corio::detail::pool_stats().live_blocks;
    task<std::string> timed = with_timeout(std::chrono::nanoseconds(0), p.s.read_until("\n"));
    EXPECT_TRUE(timed.is_ready());
    EXPECT_EQ(corio::detail::pool_stats().live_blocks, blocks_before);
    std::string second = co_await std::move(timed);
    EXPECT_EQ(first + second, "one\ntwo\n");
  });
}

TEST_P(stream_test, WithdrawnRead_ConsumesNothingAndStreamStaysUsable_S13) {
  each_transport([](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t);
    // A pending read dropped before any data.
    { auto r = p.s.read_bytes(10); }
    EXPECT_FALSE(p.s.reading());
    p.peer.send("abc");
    // A pending read that has seen bytes, given up by with_timeout.
    auto e = co_await failure_of([&] { return with_timeout(30ms, p.s.read_until("\n")); });
    EXPECT_TRUE(failed_with<timeout_error>(e));
    EXPECT_FALSE(p.s.reading());
    EXPECT_FALSE(p.s.closed());
    EXPECT_EQ(p.s.buffered_bytes(), 3u);
    p.peer.send("def\n");
    std::string line = co_await p.s.read_until("\n");
    EXPECT_EQ(line, "abcdef\n");
    // A read that completed before its task was dropped has consumed its bytes.
    p.peer.send("123456");
    std::string one = co_await p.s.read_bytes(1);
    EXPECT_EQ(one, "1");
    {
      auto done = p.s.read_bytes(2);
      EXPECT_TRUE(done.is_ready());
    }
    std::string rest = co_await p.s.read_bytes(3);
    EXPECT_EQ(rest, "456");
  });
}

TEST_P(stream_test, WithTimeout_WithdrawsPendingReadNoBytesLost_D9) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    co_await d.a.write("part-");
    for (int i = 0; i < 3; ++i) {
      auto e = co_await failure_of([&] { return with_timeout(20ms, d.b.read_bytes(100)); });
      EXPECT_TRUE(failed_with<timeout_error>(e));
      EXPECT_FALSE(d.b.reading());  // Tornado: still reading, the next read would fail
    }
    EXPECT_EQ(d.b.buffered_bytes(), 5u);
    auto next = d.b.read_until("!");
    co_await d.a.write("two!");
    std::string got = co_await std::move(next);
    EXPECT_EQ(got, "part-two!");
    // A timed-out read_into gives its bytes back too.
    co_await d.a.write("xyz");
    std::byte span[10];
    auto e = co_await failure_of([&] { return with_timeout(30ms, d.b.read_into(span)); });
    EXPECT_TRUE(failed_with<timeout_error>(e));
    std::string xyz = co_await d.b.read_bytes(3);
    EXPECT_EQ(xyz, "xyz");
  });
}

TEST_P(stream_test, WithTimeout_ReadDecidedInTheTurnTheLimitExpiresIsNotLost_S13) {
  // close() from a timer callback decides a pending read_until_close (S26) in the loop turn
  // in which with_timeout's limit also expires, and the read's resumption is queued behind
  // the limit's timer. The read has taken the bytes (S12), so the limit lets its result
  // through instead of dropping it.
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    auto everything = d.b.read_until_close();
    co_await d.a.write("kept");
    for (int i = 0; i < 200 && d.b.buffered_bytes() < 4; ++i) co_await sleep_for(1ms);
    EXPECT_EQ(d.b.buffered_bytes(), 4u);
    auto& loop = event_loop::current();
    loop.call_later(5ms, [&] { d.b.close(); });
    // Blocks the loop past both deadlines, so that both timers are due in the same turn.
    loop.call_later(1ms, [] { std::this_thread::sleep_for(30ms); });
    std::string got = co_await with_timeout(6ms, std::move(everything));
    EXPECT_EQ(got, "kept");
  });
}

TEST_P(stream_test, Write_NotAwaitedByAFinishedTaskLeavesWhenRunReturns_S4) {
  // run() returns right after the task that wrote; the write must reach the kernel then, not
  // at the next run(): a program that now blocks outside the loop waiting for the peer's
  // answer would otherwise wait forever (io_uring held the SQE until the next enter).
  event_loop loop(options());
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  raw_fd peer(fds[1]);
  std::optional<tcp_stream> s;
  loop.run([](std::optional<tcp_stream>& s, int fd) -> task<void> {
    s.emplace(fd);
    s->write("hello");
    co_return;
  }(s, fds[0]));
  pollfd readable{peer.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&readable, 1, 2000), 1) << "the write did not leave when run() returned";
  char got[8];
  EXPECT_EQ(::recv(peer.get(), got, sizeof got, MSG_DONTWAIT), 5);
  s.reset();
}

// ================================================================== 4. read_until (S14-S17)

TEST_P(stream_test, ReadUntil_DelimiterSplitAcrossChunks_S14) {
  each_transport([](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t, with_chunk(3));
    p.peer.send("ab<<BOUNDARY>>cd<<BOUND");
    std::string first = co_await p.s.read_until("<<BOUNDARY>>");  // 12 bytes over 5 chunks
    EXPECT_EQ(first, "ab<<BOUNDARY>>");
    auto second = p.s.read_until("<<BOUNDARY>>");
    co_await turns(3);
    EXPECT_FALSE(second.is_ready());
    p.peer.send("ARY>>tail");
    EXPECT_EQ(co_await std::move(second), "cd<<BOUNDARY>>");
  });
}

TEST_P(stream_test, ReadUntil_DelimiterLongerThanReadChunkSize_S14) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t, with_chunk(2));
    auto r = d.b.read_until("\r\n\r\n");
    co_await d.a.write("abc\r");
    co_await d.a.write("\n\r");
    co_await d.a.write("\nrest");
    EXPECT_EQ(co_await std::move(r), "abc\r\n\r\n");
    d.a.close();
    std::string rest = co_await d.b.read_until_close();
    EXPECT_EQ(rest, "rest");
  });
}

// The search finds the leftmost complete delimiter even where its first byte repeats just
// before it, for short delimiters (memchr of the first byte, then a compare) and long ones
// (memmem), in one chunk and a byte at a time.
TEST_P(stream_test, ReadUntil_DelimiterAfterRepeatsOfItsFirstByte_S14) {
  each_transport([](transport t) -> task<void> {
    for (std::size_t chunk : {std::size_t{1}, std::size_t{64}}) {
      auto p = co_await with_raw_peer(t, with_chunk(chunk));
      p.peer.send(
          "x\r\r\r\ny"
          "aaaaab"
          "zabababaabac"
          "12345678912345678X123456789!");
      EXPECT_EQ(co_await p.s.read_until("\r\n"), "x\r\r\r\n");
      EXPECT_EQ(co_await p.s.read_until("aab"), "yaaaaab");
      EXPECT_EQ(co_await p.s.read_until("ababaab"), "zabababaab");  // overlapping prefixes
      EXPECT_EQ(co_await p.s.read_until("ac"), "ac");
      EXPECT_EQ(co_await p.s.read_until("123456789!"), "12345678912345678X123456789!");
      EXPECT_EQ(p.s.buffered_bytes(), 0u);
    }
  });
}

TEST_P(stream_test, ReadUntil_OneSegmentPerCallLeftmostFirst_S14) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    co_await d.a.write("k1\nk2\nk3");
    std::string k1 = co_await d.b.read_until("\n");
    std::string k2 = co_await d.b.read_until("\n");
    EXPECT_EQ(k1, "k1\n");
    EXPECT_EQ(k2, "k2\n");
    EXPECT_EQ(d.b.buffered_bytes(), 2u);
  });
}

TEST_P(stream_test, ReadUntil_MaxBytesBoundaries_S15) {
  each_transport([](transport t) -> task<void> {
    {  // result of exactly M bytes succeeds, at the call and after an append
      auto p = co_await with_raw_peer(t);
      auto r = p.s.read_until("\n", 5);
      p.peer.send("abcd\nXabc\n");
      EXPECT_EQ(co_await std::move(r), "abcd\n");
      auto r2 = p.s.read_until("\n", 5);
      EXPECT_TRUE(r2.is_ready());
      EXPECT_EQ(co_await r2, "Xabc\n");
    }
    {  // M bytes without delimiter keep waiting; one more byte fails (a)
      auto p = co_await with_raw_peer(t);
      p.peer.send("abcde");
      auto e = co_await failure_of([&] { return with_timeout(30ms, p.s.read_until("\n", 5)); });
      EXPECT_TRUE(failed_with<timeout_error>(e));
      EXPECT_FALSE(p.s.closed());
      EXPECT_EQ(p.s.buffered_bytes(), 5u);
      auto r = p.s.read_until("\n", 5);
      p.peer.send("\n");
      e = co_await failure_of([&] { return std::move(r); });
      EXPECT_TRUE(closed_with(e, errc::unsatisfiable_read));
    }
    {  // no delimiter and more than M buffered fails (b)
      auto p = co_await with_raw_peer(t);
      auto r = p.s.read_until("\n", 5);
      p.peer.send("abcdef");
      auto e = co_await failure_of([&] { return std::move(r); });
      EXPECT_TRUE(closed_with(e, errc::unsatisfiable_read));
    }
    {  // the delimiter in the same packet does not help
      auto p = co_await with_raw_peer(t);
      auto r = p.s.read_until("\n", 5);
      p.peer.send("abcdef\n");
      auto e = co_await failure_of([&] { return std::move(r); });
      EXPECT_TRUE(closed_with(e, errc::unsatisfiable_read));
    }
    {  // checked at the call against what is already buffered
      auto p = co_await with_raw_peer(t);
      p.peer.send("Xabcdefgh\n");
      std::string x = co_await p.s.read_bytes(1);
      EXPECT_EQ(x, "X");
      auto e = co_await failure_of([&] { return p.s.read_until("\n", 4); });
      EXPECT_TRUE(closed_with(e, errc::unsatisfiable_read));
      EXPECT_EQ(p.s.buffered_bytes(), 9u);
    }
  });
}

TEST_P(stream_test, ReadUntil_MaxBytesExceededClosesWithMessageKeepsBuffer_S16) {
  each_transport([](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t);
    bool called = false;
    p.s.set_close_callback([&called] { called = true; });
    auto r = p.s.read_until("\r\n", 64);
    p.peer.send(std::string(65, 'h'));
    auto e = co_await failure_of([&] { return std::move(r); });
    EXPECT_TRUE(closed_with(e, errc::unsatisfiable_read));
    EXPECT_FALSE(as<unsatisfiable_read_error>(e).has_value());  // never the bare cause
    if (auto ce = as<stream_closed_error>(e)) {
      std::string what = ce->what();
      EXPECT_NE(what.find(R"(delimiter "\r\n")"), std::string::npos) << what;
      EXPECT_NE(what.find("max_bytes=64"), std::string::npos) << what;
    }
    EXPECT_TRUE(p.s.closed());
    EXPECT_EQ(p.s.error(), errc::unsatisfiable_read);
    EXPECT_EQ(p.s.buffered_bytes(), 65u);  // nothing consumed
    std::string head = co_await p.s.read_bytes(5);
    EXPECT_EQ(head, "hhhhh");
    std::string rest = co_await p.s.read_until_close();
    EXPECT_EQ(rest, std::string(60, 'h'));
    EXPECT_TRUE(co_await eventually([&] { return called; }));
  });
}

TEST_P(stream_test, ReadUntil_EmptyDelimiter_S17) {
  each_transport([](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t);
    auto r = p.s.read_until("");
    co_await turns();
    EXPECT_FALSE(r.is_ready());  // empty buffer: waits
    p.peer.send("x");
    EXPECT_EQ(co_await std::move(r), "");
    EXPECT_EQ(p.s.buffered_bytes(), 1u);  // consumes nothing
    auto r2 = p.s.read_until("");
    EXPECT_TRUE(r2.is_ready());
    EXPECT_EQ(co_await r2, "");
    std::string x = co_await p.s.read_bytes(1);
    EXPECT_EQ(x, "x");
    p.s.close();
    auto e = co_await failure_of([&] { return p.s.read_until(""); });
    EXPECT_TRUE(closed_with(e, none()));
  });
}

// ================================================================== 5. read_until_regex (S18-S20)

TEST_P(stream_test, ReadUntilRegex_FirstSuccessfulEvaluationDecides_S18) {
  each_transport([](transport t) -> task<void> {
    {
      auto p = co_await with_raw_peer(t);
      auto r = p.s.read_until_regex("[0-9]+");
      co_await turns();
      p.peer.send("ab12");
      EXPECT_EQ(co_await std::move(r), "ab12");
      p.peer.send("34x");
      std::string rest = co_await p.s.read_bytes(3);
      EXPECT_EQ(rest, "34x");
    }
    {
      auto p = co_await with_raw_peer(t);
      p.peer.send("ab1234x");
      std::string got = co_await p.s.read_until_regex("[0-9]+");
      EXPECT_EQ(got, "ab1234");
    }
  });
}

TEST_P(stream_test, ReadUntilRegex_MatchSpansChunks_S18) {
  each_transport([](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t, with_chunk(2));
    p.peer.send("Host: x\r\n\r\nbody");
    std::string head = co_await p.s.read_until_regex("\r?\n\r?\n");
    EXPECT_EQ(head, "Host: x\r\n\r\n");
    EXPECT_LE(p.s.buffered_bytes(), 1u);  // chunks of 2: at most one byte past the match
  });
}

TEST_P(stream_test, ReadUntilRegex_MaxBytes_S19) {
  each_transport([](transport t) -> task<void> {
    {
      auto p = co_await with_raw_peer(t);
      p.peer.send("abc\n");
      std::string got = co_await p.s.read_until_regex("\n", 4);  // ends exactly at M
      EXPECT_EQ(got, "abc\n");
    }
    {
      auto p = co_await with_raw_peer(t);
      auto r = p.s.read_until_regex("[\r\n]+", 4);
      p.peer.send("abcd\n");
      auto e = co_await failure_of([&] { return std::move(r); });
      EXPECT_TRUE(closed_with(e, errc::unsatisfiable_read));
      if (auto ce = as<stream_closed_error>(e)) {
        std::string what = ce->what();
        EXPECT_NE(what.find("read_until_regex"), std::string::npos) << what;
        EXPECT_NE(what.find("max_bytes=4"), std::string::npos) << what;
      }
      EXPECT_EQ(p.s.error(), errc::unsatisfiable_read);
      EXPECT_EQ(p.s.buffered_bytes(), 5u);
    }
    {
      auto p = co_await with_raw_peer(t);
      auto r = p.s.read_until_regex("z", 4);
      p.peer.send("abcde");
      auto e = co_await failure_of([&] { return std::move(r); });
      EXPECT_TRUE(closed_with(e, errc::unsatisfiable_read));
    }
  });
}

TEST_P(stream_test, ReadUntilRegex_AnchorsAtFirstUnconsumedByte_S20) {
  each_transport([](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t);
    p.peer.send("xxabc\nyy");
    std::string xx = co_await p.s.read_bytes(2);
    EXPECT_EQ(xx, "xx");
    std::string got = co_await p.s.read_until_regex("^abc");
    EXPECT_EQ(got, "abc");
    got = co_await p.s.read_until_regex("\\A\n");
    EXPECT_EQ(got, "\n");
  });
}

TEST_P(stream_test, ReadUntilRegex_SubjectIsUnconsumedBytesOnly_D2) {
  run([]() -> task<void> {
    auto p = co_await with_raw_peer(transport::unix_pair);
    p.peer.send("abX");
    std::string ab = co_await p.s.read_bytes(2);
    EXPECT_EQ(ab, "ab");
    // Look-behind cannot see the consumed "b" (Tornado's can).
    auto e =
        co_await failure_of([&] { return with_timeout(30ms, p.s.read_until_regex("(?<=b)X")); });
    EXPECT_TRUE(failed_with<timeout_error>(e));
    std::string x = co_await p.s.read_until_regex("^X");
    EXPECT_EQ(x, "X");
  }());
}

TEST_P(stream_test, ReadUntilRegex_SupportedSyntaxBytewise_S20) {
  struct regex_case {
    const char* pattern;
    std::string data;
    std::string expected;
  };
  const std::vector<regex_case> cases = {
      {"\\d+", "ab123x", "ab123"},
      {"\\s", "ab\tc", "ab\t"},
      {"\\w\\w;", "..xy;z", "..xy;"},
      {"[a-c]{2,3}!", "zzabc!q", "zzabc!"},
      {"[^a-z]", "abc-d", "abc-"},
      {"(foo|bar)\\.", "xbar.y", "xbar."},
      {"a.c", "a\nc abc", "a\nc abc"},
      {"x?y+z*", "qyyq", "qyy"},
      {"\\r\\n", "a\r\nb", "a\r\n"},
      {"\\t", "a\tb", "a\t"},
      {"end$", "the end", "the end"},
      {"(ab)+c", "ababc!", "ababc"},
      {"\\xff\\xfe",
       std::string("a\xff\xfe"
                   "b"),
       std::string("a\xff\xfe")},
      {"^..$", std::string("\xc3\xa9"), std::string("\xc3\xa9")},  // bytes, not UTF-8
      {"", "q", ""},                                               // like read_until("")
  };
  each_transport([&cases](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t);
    for (const regex_case& c : cases) {
      SCOPED_TRACE(std::string("pattern ") + c.pattern);
      p.peer.send(c.data);
      std::string got = co_await p.s.read_until_regex(c.pattern);
      EXPECT_EQ(got, c.expected);
      std::size_t left = c.data.size() - got.size();
      if (left > 0) {
        std::string rest = co_await p.s.read_bytes(left);
        EXPECT_EQ(rest, c.data.substr(got.size()));
      }
      EXPECT_EQ(p.s.buffered_bytes(), 0u);
    }
  });
}

TEST_P(stream_test, ReadUntilRegex_InvalidPatternLeavesStreamUsable_D8) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    co_await d.a.write("aXbY");
    std::string a = co_await d.b.read_until_regex("a");
    EXPECT_EQ(a, "a");
    auto e = co_await failure_of([&] { return d.b.read_until_regex("(["); });
    EXPECT_TRUE(failed_with<regex_error>(e));
    EXPECT_TRUE(failed_with<corio::error>(e));
    EXPECT_FALSE(d.b.reading());
    EXPECT_FALSE(d.b.closed());
    EXPECT_EQ(d.b.buffered_bytes(), 3u);
    std::string xb = co_await d.b.read_until_regex("b");  // the stream reads on
    EXPECT_EQ(xb, "Xb");
    // While a read is pending, a bad pattern fails and leaves that read alone.
    auto pending = d.b.read_until_regex("Z");
    e = co_await failure_of([&] { return d.b.read_until_regex("(?<"); });
    EXPECT_TRUE(e != nullptr);
    EXPECT_TRUE(d.b.reading());
    co_await d.a.write("Z");
    EXPECT_EQ(co_await std::move(pending), "YZ");
  });
}

TEST_P(stream_test, ReadUntilRegex_BacktrackingOverManyBytesStillMatches_S20) {
  // (?:.|\n)*? pushes a backtracking frame per byte: 64 KiB of them exhaust the JIT's 32 KiB
  // stack. That is not "no match": the interpreter (heap frames) decides instead.
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    const std::string head = std::string(64 << 10, 'x') + "\r\n\r\n";
    d.a.write(head);
    EXPECT_EQ(co_await d.b.read_until_regex("(?:.|\n)*?\r\n\r\n"), head);
  });
}

TEST_P(stream_test, ReadUntilRegex_PatternPcre2CannotDecideFailsTheReadKeepsTheBytes_S20) {
  // ^(a+)+$ on 40 a's and an X reaches PCRE2's match limit. The read fails with regex_error
  // (it used to wait forever); nothing is consumed and the stream reads on.
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    const std::string as = std::string(40, 'a') + "X";
    co_await d.a.write(as);
    co_await sleep_for(5ms);
    auto e = co_await failure_of([&] { return d.b.read_until_regex("^(a+)+$"); });
    EXPECT_TRUE(failed_with<regex_error>(e));
    EXPECT_FALSE(d.b.closed());
    EXPECT_FALSE(d.b.reading());
    EXPECT_EQ(co_await d.b.read_bytes(as.size()), as);
    // Byte-wise only (S20): a pattern asking for UTF is refused at the call.
    e = co_await failure_of([&] { return d.b.read_until_regex("(*UTF)a"); });
    EXPECT_TRUE(failed_with<regex_error>(e));
  });
}

// ================================================================== 6. read_bytes (S21-S23)

TEST_P(stream_test, ReadBytes_ExactAccumulatesAcrossChunksExcessStays_S21) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t, with_chunk(3));
    auto r = d.b.read_bytes(10);
    co_await d.a.write("012");
    co_await d.a.write("345");
    co_await turns();
    EXPECT_FALSE(r.is_ready());
    co_await d.a.write("6789abcde");
    EXPECT_EQ(co_await std::move(r), "0123456789");
    EXPECT_LE(d.b.buffered_bytes(), 2u);  // chunk of 3 that completed it
    std::string rest = co_await d.b.read_bytes(5);
    EXPECT_EQ(rest, "abcde");
  });
}

TEST_P(stream_test, ReadBytes_PartialReturnsWhatIsThereNeverEmpty_S22) {
  each_transport([](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t);
    auto r = p.s.read_bytes(100, true);
    co_await turns();
    EXPECT_FALSE(r.is_ready());
    p.peer.send("abc");
    EXPECT_EQ(co_await std::move(r), "abc");
    p.peer.send("defghi");
    std::string d = co_await p.s.read_bytes(1, true);
    EXPECT_EQ(d, "d");
    std::string ef = co_await p.s.read_bytes(2, true);
    EXPECT_EQ(ef, "ef");
    std::string ghi = co_await p.s.read_bytes(10, true);
    EXPECT_EQ(ghi, "ghi");
    // After EOF: the rest, then closed.
    p.peer.send("xy");
    std::string x = co_await p.s.read_bytes(1);
    EXPECT_EQ(x, "x");
    p.peer.close();
    auto e = co_await failure_of([&] { return p.s.read_bytes(5); });  // sees EOF
    EXPECT_TRUE(closed_with(e, none()));
    std::string y = co_await p.s.read_bytes(5, true);
    EXPECT_EQ(y, "y");
    e = co_await failure_of([&] { return p.s.read_bytes(5, true); });
    EXPECT_TRUE(closed_with(e, none()));
  });
}

TEST_P(stream_test, ReadBytes_ZeroCompletesAtOnceEvenWhenClosed_S23) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    for (bool partial : {false, true}) {
      auto r = d.b.read_bytes(0, partial);
      EXPECT_TRUE(r.is_ready());
      EXPECT_EQ(co_await r, "");
    }
    EXPECT_FALSE(d.b.reading());
    d.b.close();
    for (bool partial : {false, true}) {
      auto r = d.b.read_bytes(0, partial);
      EXPECT_TRUE(r.is_ready());
      EXPECT_EQ(co_await r, "");
    }
  });
}

// ================================================================== 7. read_into (S24-S25)

TEST_P(stream_test, ReadInto_BufferedFirstThenOnlyFreeSpaceRequested_S24) {
  each_transport([](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t);
    p.peer.send("ABCDEF");
    std::string a = co_await p.s.read_bytes(1);
    EXPECT_EQ(a, "A");
    CO_ASSERT_TRUE(p.s.buffered_bytes() == 5u);
    char buf[8];
    auto r = p.s.read_into(std::as_writable_bytes(std::span(buf)));
    co_await turns();
    EXPECT_FALSE(r.is_ready());
    p.peer.send("GHIJKLMN");
    EXPECT_EQ(co_await std::move(r), 8u);
    EXPECT_EQ(std::string_view(buf, 8), "BCDEFGHI");
    EXPECT_EQ(p.s.buffered_bytes(), 0u);  // asked the transport for 3 bytes only
    // Bigger than what is free in the span arrives: the excess stays in the kernel.
    char buf2[10];
    std::size_t n = co_await p.s.read_into(std::as_writable_bytes(std::span(buf2)), true);
    EXPECT_EQ(n, 5u);
    EXPECT_EQ(std::string_view(buf2, 5), "JKLMN");
    // Leftover buffered bytes that do not fit stay buffered.
    p.peer.send("0123456789");
    std::string z = co_await p.s.read_bytes(1);
    EXPECT_EQ(z, "0");
    char buf3[4];
    auto r3 = p.s.read_into(std::as_writable_bytes(std::span(buf3)));
    EXPECT_TRUE(r3.is_ready());
    EXPECT_EQ(co_await r3, 4u);
    EXPECT_EQ(std::string_view(buf3, 4), "1234");
    EXPECT_EQ(p.s.buffered_bytes(), 5u);
  });
}

TEST_P(stream_test, ReadInto_WithdrawnKeepsEveryByte_S24) {
  each_transport([](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t, with_chunk(2));
    p.peer.send("abcde");
    char buf[10];
    auto e = co_await failure_of(
        [&] { return with_timeout(30ms, p.s.read_into(std::as_writable_bytes(std::span(buf)))); });
    EXPECT_TRUE(failed_with<timeout_error>(e));
    EXPECT_FALSE(p.s.reading());
    std::string got = co_await p.s.read_bytes(5);
    EXPECT_EQ(got, "abcde");
  });
}

TEST_P(stream_test, ReadInto_BytesAfterCountUntouchedEmptySpanAtOnce_S25) {
  each_transport([](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t);
    char buf[10];
    std::memset(buf, '#', sizeof buf);
    auto r = p.s.read_into(std::as_writable_bytes(std::span(buf)), true);
    p.peer.send("abc");
    EXPECT_EQ(co_await std::move(r), 3u);
    EXPECT_EQ(std::string_view(buf, 10), "abc#######");
    auto z = p.s.read_into({});
    EXPECT_TRUE(z.is_ready());
    EXPECT_EQ(co_await z, 0u);
    p.s.close();
    auto z2 = p.s.read_into({}, true);
    EXPECT_TRUE(z2.is_ready());
    EXPECT_EQ(co_await z2, 0u);
  });
}

// ================================================================== 8. read_until_close (S26-S27)

TEST_P(stream_test, ReadUntilClose_CompletesOnEveryCloseCause_S26) {
  each_transport([](transport t) -> task<void> {
    {  // EOF
      auto d = co_await connected(t);
      auto r = d.b.read_until_close();
      co_await d.a.write("abc");
      co_await d.a.write("def");
      d.a.close();
      EXPECT_EQ(co_await std::move(r), "abcdef");
      EXPECT_EQ(d.b.error(), none());
    }
    {  // local close(), with a reason
      auto d = co_await connected(t);
      auto r = d.b.read_until_close();
      co_await d.a.write("xyz");
      CO_ASSERT_TRUE(co_await eventually([&] { return d.b.buffered_bytes() == 3; }));
      d.b.close(os(ECONNABORTED));
      EXPECT_EQ(co_await std::move(r), "xyz");
      EXPECT_EQ(d.b.error(), os(ECONNABORTED));
    }
    if (t == transport::tcp) {  // connection reset: visible only through error()
      auto p = co_await with_raw_peer(t);
      auto r = p.s.read_until_close();
      p.peer.send("abc");
      CO_ASSERT_TRUE(co_await eventually([&] { return p.s.buffered_bytes() == 3; }));
      p.peer.reset();
      auto e = co_await failure_of([&] { return std::move(r); });
      EXPECT_EQ(e, nullptr) << describe(e);
      EXPECT_EQ(p.s.error(), os(ECONNRESET));
    }
  });
}

TEST_P(stream_test, ReadUntilClose_OnClosedStreamRepeatableNeverFails_S27) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    co_await d.a.write("leftover");
    std::string l = co_await d.b.read_bytes(1);
    EXPECT_EQ(l, "l");
    d.b.close(os(EPIPE));
    auto r = d.b.read_until_close();
    EXPECT_TRUE(r.is_ready());
    EXPECT_EQ(co_await r, "eftover");
    for (int i = 0; i < 2; ++i) {
      auto again = d.b.read_until_close();
      EXPECT_TRUE(again.is_ready());
      EXPECT_EQ(co_await again, "");
    }
  });
}

// ================================================================== 9. Writing (S28-S34)

TEST_P(stream_test, Write_CapturesAtCallAndKeepsCallOrder_S28) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    std::string buf = "hello";
    d.a.write(std::string_view(buf));
    buf = "XXXXX";  // reused at once
    std::string expected = "hello";
    std::mt19937 rng(5);
    for (int i = 0; i < 200; ++i) {
      std::size_t n = (i % 17 == 0) ? 5000 + rng() % 5000 : rng() % 40;  // merged and large
      std::string piece = pattern_bytes(n, static_cast<unsigned>(i));
      expected += piece;
      if (i % 2) {
        d.a.write(std::move(piece));
      } else {
        d.a.write(std::string_view(piece));
      }
    }
    std::string got = co_await d.b.read_bytes(expected.size());
    EXPECT_TRUE(got == expected);
  });
}

TEST_P(stream_test, Write_DroppedOrTimedOutTaskStillSends_S28) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    std::string big = pattern_bytes(32 << 20, 3);  // more than the kernel buffers hold
    { auto dropped = d.a.write("first"); }
    auto e = co_await failure_of([&] { return with_timeout(30ms, d.a.write(big)); });
    EXPECT_TRUE(failed_with<timeout_error>(e));
    EXPECT_FALSE(d.a.closed());
    auto tail = d.a.write("tail");
    std::string got = co_await d.b.read_bytes(5 + big.size() + 4);
    EXPECT_EQ(got.substr(0, 5), "first");
    EXPECT_TRUE(got.substr(5, big.size()) == big);
    EXPECT_EQ(got.substr(5 + big.size()), "tail");
    co_await std::move(tail);
  });
}

TEST_P(stream_test, Write_CompletesWhenKernelAcceptedNotWhenPeerReads_S29) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    co_await d.a.write("small");  // the peer never read it
    EXPECT_FALSE(d.a.writing());
    std::vector<std::string> log;
    std::string big(32 << 20, 'B');
    auto w1 = corio::start(log_op(d.a.write(big), &log, "big"));
    auto w2 = corio::start(log_op(d.a.write("after"), &log, "after"));
    co_await sleep_for(30ms);
    EXPECT_TRUE(log.empty());  // the kernel cannot take 32 MiB while nobody reads
    EXPECT_TRUE(d.a.writing());
    std::string got = co_await d.b.read_bytes(5 + big.size() + 5);
    EXPECT_EQ(got.size(), 5 + big.size() + 5);
    co_await std::move(w1);
    co_await std::move(w2);
    EXPECT_EQ(log, (std::vector<std::string>{"big:ok", "after:ok"}));
    EXPECT_FALSE(d.a.writing());
  });
}

// A7: one write larger than Linux transfers in one call (0x7ffff000 bytes) is split by the
// stream, never truncated: every byte arrives in order and the write completes once.
TEST_P(stream_test, Write_LargerThanTwoGibibytesArrivesWhole_A7) {
  run(
      []() -> task<void> {
        constexpr std::size_t page = 4096;
        constexpr std::size_t size = (std::size_t{2} << 30) + page + 7;  // > 0x7ffff000
        auto [a, b] = stream_pair();
        std::string big(size, '\0');
        // Every page starts with its number mod 251: a lost, repeated or reordered span of
        // whole pages (the split is page-aligned) moves a mark.
        for (std::size_t i = 0; i < size; i += page) big[i] = static_cast<char>(i / page % 251 + 1);
        auto writing = corio::start(a.write(std::move(big)));
        std::vector<std::byte> chunk(1 << 20);
        std::size_t received = 0;
        std::size_t bad_marks = 0;
        while (received < size) {
          std::size_t n = co_await b.read_into(chunk, /*partial=*/true);
          for (std::size_t at = (received + page - 1) / page * page; at < received + n;
               at += page) {
            auto mark = static_cast<unsigned char>(chunk[at - received]);
            if (mark != at / page % 251 + 1) ++bad_marks;
          }
          received += n;
        }
        co_await std::move(writing);
        EXPECT_EQ(received, size);
        EXPECT_EQ(bad_marks, 0u);
        EXPECT_FALSE(a.writing());
      }(),
      120s);
}

TEST_P(stream_test, Write_CompletionsInCallOrderEmptyWriteIsBarrier_S30) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    std::vector<std::string> log;
    std::vector<task<void>> watchers;
    for (int i = 0; i < 6; ++i) {
      std::string piece = pattern_bytes(i % 2 ? 3000 : 10, static_cast<unsigned>(i));
      watchers.push_back(corio::start(log_op(d.a.write(piece), &log, std::to_string(i))));
    }
    auto barrier = d.a.write("");
    EXPECT_FALSE(barrier.is_ready());  // earlier bytes are not sent yet
    watchers.push_back(corio::start(log_op(std::move(barrier), &log, "barrier")));
    for (auto& w : watchers) co_await std::move(w);
    EXPECT_EQ(log, (std::vector<std::string>{"0:ok", "1:ok", "2:ok", "3:ok", "4:ok", "5:ok",
                                             "barrier:ok"}));
    auto idle = d.a.write("");
    EXPECT_TRUE(idle.is_ready());
    co_await idle;
  });
}

TEST_P(stream_test, Write_MaxWriteBufferSize_S31) {
  each_transport([](transport t) -> task<void> {
    stream_options o;
    o.max_write_buffer_size = 10;
    auto d = co_await connected(t, o);
    // Checked before any send: 11 bytes fail on an empty queue.
    auto e = co_await failure_of([&] { return d.a.write("0123456789A"); });
    EXPECT_TRUE(failed_with<stream_buffer_full_error>(e));
    EXPECT_FALSE(d.a.closed());
    EXPECT_FALSE(d.a.writing());
    // Exactly the limit, in two writes, is accepted; one more byte is not.
    auto w1 = d.a.write("0123");
    auto w2 = d.a.write(std::string("456789"));
    e = co_await failure_of([&] { return d.a.write("X"); });
    EXPECT_TRUE(failed_with<stream_buffer_full_error>(e));
    EXPECT_FALSE(d.a.closed());
    e = co_await failure_of([&] { return d.a.write(""); });  // zero bytes fit
    EXPECT_EQ(e, nullptr) << describe(e);
    co_await w1;
    co_await w2;
    co_await d.a.write("abc");
    std::string got = co_await d.b.read_bytes(13);
    EXPECT_EQ(got, "0123456789abc");  // the rejected data was never queued
  });
}

TEST_P(stream_test, Write_OnClosedStreamFailsWithStreamError_S32) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    d.a.close();
    for (const char* data : {"x", ""}) {
      auto e = co_await failure_of([&] { return d.a.write(data); });
      EXPECT_TRUE(closed_with(e, none()));
    }
    d.b.close(os(ETIMEDOUT));
    auto e = co_await failure_of([&] { return d.b.write(std::string("y")); });
    EXPECT_TRUE(closed_with(e, os(ETIMEDOUT)));
  });
}

/// Writes until one fails; the error (or nullptr after 200 successful writes).
task<std::exception_ptr> write_until_failure(tcp_stream& s) {
  for (int i = 0; i < 200; ++i) {
    auto e = co_await failure_of([&] { return s.write("ping"); });
    if (e) co_return e;
    co_await sleep_for(1ms);
  }
  co_return nullptr;
}

bool is_peer_gone(std::error_code code) { return code == os(EPIPE) || code == os(ECONNRESET); }

TEST_P(stream_test, Write_AfterPeerVanishedFailsWithEpipeOrReset_S33) {
  each_transport([](transport t) -> task<void> {
    for (bool rst : {false, true}) {
      if (rst && t != transport::tcp) continue;
      SCOPED_TRACE(rst ? "peer reset" : "peer closed");
      auto p = co_await with_raw_peer(t);
      if (rst) {
        p.peer.reset();
      } else {
        p.peer.close();
      }
      auto e = co_await write_until_failure(p.s);
      auto ce = as<stream_closed_error>(e);
      CO_ASSERT_TRUE(ce.has_value());
      EXPECT_TRUE(is_peer_gone(ce->code())) << describe(e);
      EXPECT_TRUE(p.s.closed());
      EXPECT_EQ(p.s.error(), ce->code());
      auto later = co_await failure_of([&] { return p.s.write("late"); });
      EXPECT_TRUE(closed_with(later, ce->code()));
    }
  });
}

TEST_P(stream_test, Write_FailureFailsEveryQueuedWriteWithThatError_S33) {
  each_transport([](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t);
    // Fill the kernel so that the queued writes are still waiting when the peer goes.
    std::string big(32 << 20, 'f');
    auto w1 = p.s.write(big);
    auto w2 = p.s.write("second");
    auto w3 = p.s.write("third");
    co_await sleep_for(20ms);
    CO_ASSERT_TRUE(!w1.is_ready());
    if (t == transport::tcp) {
      p.peer.reset();
    } else {
      p.peer.close();
    }
    auto e1 = co_await failure_of([&] { return std::move(w1); });
    auto e2 = co_await failure_of([&] { return std::move(w2); });
    auto e3 = co_await failure_of([&] { return std::move(w3); });
    auto ce = as<stream_closed_error>(e1);
    CO_ASSERT_TRUE(ce.has_value());
    EXPECT_TRUE(is_peer_gone(ce->code())) << describe(e1);
    EXPECT_TRUE(closed_with(e2, ce->code()));
    EXPECT_TRUE(closed_with(e3, ce->code()));
    EXPECT_EQ(p.s.error(), ce->code());
    EXPECT_FALSE(p.s.writing());
  });
}

TEST_P(stream_test, ReadsAndWritesAreIndependent_S34) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    auto r = d.a.read_until("\n");
    co_await d.a.write("not blocked by the pending read");
    EXPECT_FALSE(r.is_ready());
    std::string big(32 << 20, 'i');
    auto w = d.a.write(big);
    co_await d.b.write("reply\n");
    std::string reply = co_await std::move(r);  // not blocked by the pending write
    EXPECT_EQ(reply, "reply\n");
    EXPECT_FALSE(w.is_ready());
    std::string got = co_await d.b.read_bytes(31 + big.size());
    EXPECT_EQ(got.size(), 31 + big.size());
    co_await std::move(w);
  });
}

// ================================================================== 10. Closing (S35-S41)

TEST_P(stream_test, Close_CausesAndRecordedError_S35) {
  each_transport([](transport t) -> task<void> {
    {  // EOF closes both directions, error none; earlier writes were sent
      auto p = co_await with_raw_peer(t);
      co_await p.s.write("before");
      p.peer.shutdown_write();
      auto e = co_await failure_of([&] { return p.s.read_bytes(1); });
      EXPECT_TRUE(closed_with(e, none()));
      EXPECT_TRUE(p.s.closed());
      EXPECT_EQ(p.s.error(), none());
      e = co_await failure_of([&] { return p.s.write("after"); });  // no half-close
      EXPECT_TRUE(closed_with(e, none()));
      EXPECT_EQ(p.peer.recv(6), "before");
    }
    {  // close() and close(reason)
      auto d = co_await connected(t);
      d.a.close();
      EXPECT_EQ(d.a.error(), none());
      d.b.close(os(ETIMEDOUT));
      EXPECT_EQ(d.b.error(), os(ETIMEDOUT));
    }
    {  // max_bytes and overflow
      auto p = co_await with_raw_peer(t, with_max_buffer(100));
      p.peer.send(std::string(30, 'u'));
      auto e = co_await failure_of([&] { return p.s.read_until("\n", 20); });
      EXPECT_TRUE(closed_with(e, errc::unsatisfiable_read));
      EXPECT_EQ(p.s.error(), errc::unsatisfiable_read);
      auto q = co_await with_raw_peer(t, with_max_buffer(100));
      q.peer.send(std::string(200, 'o'));
      e = co_await failure_of([&] { return q.s.read_until("\n"); });
      EXPECT_TRUE(closed_with(e, errc::buffer_full));
      EXPECT_EQ(q.s.error(), errc::buffer_full);
    }
  });
}

TEST_P(stream_test, PeerResetMidRead_FailsWithConnectionReset_S35) {
  run([]() -> task<void> {
    auto p = co_await with_raw_peer(transport::tcp);
    auto r = p.s.read_bytes(100);
    p.peer.send("only ten..");
    co_await turns();
    p.peer.reset();
    auto e = co_await failure_of([&] { return std::move(r); });
    EXPECT_TRUE(closed_with(e, os(ECONNRESET)));
    EXPECT_TRUE(p.s.closed());
    EXPECT_EQ(p.s.error(), os(ECONNRESET));
    e = co_await failure_of([&] { return p.s.write("x"); });
    EXPECT_TRUE(closed_with(e, os(ECONNRESET)));
  }());
}

TEST_P(stream_test, Close_IdempotentDiscardsUnsentFirstReasonWins_S36) {
  each_transport([](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t);
    // More than the kernel's socket buffers take at once: the rest is discarded by close().
    const std::size_t total = 64u << 20;
    auto w = p.s.write(std::string(total, 'x'));
    EXPECT_TRUE(p.s.writing());
    p.s.close(os(ECONNABORTED));
    p.s.close(os(ETIMEDOUT));
    p.s.close();
    EXPECT_TRUE(p.s.closed());
    EXPECT_FALSE(p.s.writing());
    EXPECT_EQ(p.s.error(), os(ECONNABORTED));
    auto e = co_await failure_of([&] { return std::move(w); });
    EXPECT_TRUE(closed_with(e, os(ECONNABORTED)));
    std::string got = p.peer.recv(total);
    EXPECT_LT(got.size(), total);  // not flushed: the transport closed with data unsent
    EXPECT_TRUE(p.peer.sees_eof());
  });
}

TEST_P(stream_test, Close_SendsWhatTheKernelTakesAtOnce_S36) {
  // Tornado's write() sends inline, so `write(x); close()` delivers a small x. corio gathers
  // writes until the end of the loop turn, so close() makes that one non-blocking send.
  each_transport([](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t);
    auto w = p.s.write("last words");
    p.s.close();
    co_await std::move(w);  // it was sent, so it completed
    EXPECT_EQ(p.peer.recv(10), "last words");
    EXPECT_TRUE(p.peer.sees_eof());
  });
}

TEST_P(stream_test, ShutdownWrite_PeerGetsTheDataThenEofAndCanStillSend) {
  // Not in Tornado (no half-close, S35): a lingering close for HTTP error answers.
  each_transport([](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t);
    auto w = p.s.write("last words");
    p.s.shutdown_write();  // the FIN follows the queued bytes
    p.s.shutdown_write();  // idempotent
    EXPECT_THROW(p.s.write("more"), std::logic_error);
    EXPECT_THROW(p.s.write(std::string("more")), std::logic_error);
    co_await std::move(w);
    EXPECT_EQ(p.peer.recv(10), "last words");
    EXPECT_TRUE(p.peer.sees_eof());
    EXPECT_FALSE(p.s.closed());
    p.peer.send("still sending");  // the other direction is open
    EXPECT_EQ(co_await p.s.read_bytes(13), "still sending");
    p.peer.close();
    EXPECT_EQ(co_await p.s.read_until_close(), "");  // EOF closes the stream (S35)
    EXPECT_EQ(p.s.error(), none());
    p.s.shutdown_write();  // nothing on a closed stream
  });
}

TEST_P(stream_test, ShutdownWrite_PipeStreamIsALogicError) {
  run([]() -> task<void> {
    auto [r, w] = make_pipe();
    EXPECT_THROW(w.shutdown_write(), std::logic_error);
    co_await w.write("still usable");
    EXPECT_EQ(co_await r.read_bytes(12), "still usable");
  }());
}

TEST_P(stream_test, Close_PendingOpsOutcomesInOrder_S37) {
  each_transport([](transport t) -> task<void> {
    {  // a pending read_until_close completes with the whole buffer
      auto d = co_await connected(t);
      auto r = d.b.read_until_close();
      co_await d.a.write("kept");
      CO_ASSERT_TRUE(co_await eventually([&] { return d.b.buffered_bytes() == 4; }));
      d.b.close();
      EXPECT_EQ(co_await std::move(r), "kept");
    }
    {  // other reads and queued writes fail with error(), then the callback runs
      auto d = co_await connected(t);
      std::vector<std::string> log;
      d.b.set_close_callback([&log] { log.push_back("callback"); });
      auto r = corio::start(log_op(d.b.read_bytes(10), &log, "read"));
      // Too large for close()'s single non-blocking send: these still fail (S36, S37).
      auto w1 = d.b.write(std::string(32u << 20, '1'));
      auto w2 = d.b.write(std::string(32u << 20, '2'));
      d.b.close(os(ECONNABORTED));
      auto e = co_await failure_of([&] { return std::move(w1); });
      EXPECT_TRUE(closed_with(e, os(ECONNABORTED)));
      e = co_await failure_of([&] { return std::move(w2); });
      EXPECT_TRUE(closed_with(e, os(ECONNABORTED)));
      co_await std::move(r);
      co_await turns();
      EXPECT_EQ(log, (std::vector<std::string>{"read:closed", "callback"}));
    }
  });
}

// B16: close() while a receive is in the kernel (io_uring) or waiting (epoll): the read fails
// at once, the peer sees EOF (the socket is really closed: FIN sent, not kept open by the
// pending receive), and a socket made right after, which may get the same fd number, works.
TEST_P(stream_test, Close_WithReceivePendingSendsFinAndFreesTheFd_B16) {
  each_transport([](transport t) -> task<void> {
    const int fds_before = corio::testing::open_fd_count();
    {
      auto d = co_await connected(t);
      auto pending = corio::start(d.b.read_until("\n"));
      co_await turns();  // the receive is submitted and waiting for data
      CO_ASSERT_TRUE(d.b.reading());
      d.b.close();
      auto e = co_await failure_of([&] { return std::move(pending); });
      EXPECT_TRUE(e != nullptr) << "the pending read did not fail";
      EXPECT_EQ(co_await d.a.read_until_close(), "");  // EOF: the FIN arrived
      auto [x, y] = stream_pair();
      co_await y.write("fresh\n");
      EXPECT_EQ(co_await x.read_until("\n"), "fresh\n");
    }
    co_await turns();
    EXPECT_EQ(corio::testing::open_fd_count(), fds_before);
  });
}

TEST_P(stream_test, CloseCallback_AfterContinuationsExactlyOnceNeverInsideClose_S38) {
  each_transport([](transport t) -> task<void> {
    for (bool remote : {false, true}) {
      SCOPED_TRACE(remote ? "closed by peer EOF" : "closed locally");
      auto d = co_await connected(t);
      std::vector<std::string> log;
      int calls = 0;
      d.b.set_close_callback([&log, &calls] {
        ++calls;
        log.push_back("callback");
      });
      auto r = corio::start(log_op(d.b.read_bytes(10), &log, "read"));
      // Larger than the socket buffers, so that a local close() cannot send it all.
      std::string payload = remote ? std::string("queued") : std::string(64u << 20, 'q');
      auto w = corio::start(log_op(d.b.write(std::move(payload)), &log, "write"));
      if (remote) {
        co_await std::move(w);  // let the write go out first, then the EOF fails the read
        d.a.close();
      } else {
        d.b.close();
        EXPECT_TRUE(log.empty());  // never inside close()
        EXPECT_EQ(calls, 0);
      }
      co_await std::move(r);
      CO_ASSERT_TRUE(co_await eventually([&] { return calls > 0; }));
      if (remote) {
        EXPECT_EQ(log, (std::vector<std::string>{"write:ok", "read:closed", "callback"}));
      } else {
        EXPECT_EQ(log, (std::vector<std::string>{"read:closed", "write:closed", "callback"}));
      }
      d.b.close();
      co_await turns(5);
      EXPECT_EQ(calls, 1);
    }
  });
}

TEST_P(stream_test, CloseCallback_ReplacedClearedAndSetAfterClose_S38) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    int first = 0, second = 0, late = 0;
    d.b.set_close_callback([&first] { ++first; });
    d.b.set_close_callback([&second] { ++second; });  // replaces
    d.a.set_close_callback([&first] { ++first; });
    d.a.set_close_callback({});  // clears
    d.a.close();
    CO_ASSERT_TRUE(co_await eventually([&] { return second == 1; }));
    co_await turns();
    EXPECT_EQ(first, 0);
    EXPECT_TRUE(d.b.closed());
    d.b.set_close_callback([&late] { ++late; });  // on a closed stream: not run ...
    co_await turns(5);
    EXPECT_EQ(late, 0);
    d.b.close();  // ... until close() is called again
    EXPECT_EQ(late, 0);
    CO_ASSERT_TRUE(co_await eventually([&] { return late == 1; }));
    d.b.close();
    co_await turns(3);
    EXPECT_EQ(late, 1);
    EXPECT_EQ(second, 1);
  });
}

TEST_P(stream_test, CloseCallback_IsTheOneSetWhenTheStreamClosed_S38) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    int at_close = 0, after_close = 0;
    d.b.set_close_callback([&at_close] { ++at_close; });
    d.b.close();
    // Set on a closed stream (same turn, before the loop ran anything): not invoked, and
    // the callback the stream had when it closed still runs exactly once.
    d.b.set_close_callback([&after_close] { ++after_close; });
    co_await turns(5);
    EXPECT_EQ(at_close, 1);
    EXPECT_EQ(after_close, 0);
    d.b.close();  // closing again runs the one set since
    CO_ASSERT_TRUE(co_await eventually([&] { return after_close == 1; }));
    EXPECT_EQ(at_close, 1);
    // Clearing after the close does not cancel the callback of that close either.
    int cleared = 0;
    d.a.set_close_callback([&cleared] { ++cleared; });
    d.a.close();
    d.a.set_close_callback({});
    co_await turns(5);
    EXPECT_EQ(cleared, 1);
  });
}

TEST_P(stream_test, Close_BufferedDataSurvives_S39) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    co_await d.a.write("hello");
    std::string h = co_await d.b.read_bytes(1);
    EXPECT_EQ(h, "h");
    d.b.close();
    EXPECT_EQ(d.b.buffered_bytes(), 4u);
    std::string e = co_await d.b.read_bytes(1);
    EXPECT_EQ(e, "e");
    std::string rest = co_await d.b.read_until_close();
    EXPECT_EQ(rest, "llo");
  });
}

TEST_P(stream_test, CloseCallback_IdleStreamDetectsPeerClose_S40) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    bool called = false;
    d.b.set_close_callback([&called] { called = true; });
    co_await turns();
    d.a.close();
    CO_ASSERT_TRUE(co_await eventually([&] { return called; }));
    EXPECT_TRUE(d.b.closed());
    EXPECT_EQ(d.b.error(), none());
  });
}

TEST_P(stream_test, CloseCallback_NotWhileUnreadBytesBuffered_S40) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    bool called = false;
    d.b.set_close_callback([&called] { called = true; });
    co_await d.a.write("x");
    d.a.close();
    co_await sleep_for(50ms);
    EXPECT_FALSE(called);
    EXPECT_FALSE(d.b.closed());
    EXPECT_EQ(d.b.buffered_bytes(), 1u);  // one watch read kept the data
    std::string x = co_await d.b.read_bytes(1);
    EXPECT_EQ(x, "x");
    CO_ASSERT_TRUE(co_await eventually([&] { return called; }));  // watching resumed
    EXPECT_TRUE(d.b.closed());
  });
}

TEST_P(stream_test, StateQueries_S41) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    EXPECT_FALSE(d.b.closed());
    EXPECT_FALSE(d.b.reading());
    EXPECT_FALSE(d.b.writing());
    EXPECT_EQ(d.b.error(), none());
    auto r = d.b.read_bytes(2);
    EXPECT_TRUE(d.b.reading());
    auto w = d.b.write("out");
    EXPECT_TRUE(d.b.writing());
    co_await w;
    EXPECT_FALSE(d.b.writing());
    co_await d.a.write("in");
    std::string in = co_await std::move(r);
    EXPECT_EQ(in, "in");
    EXPECT_FALSE(d.b.reading());
    auto r2 = d.b.read_bytes(2);
    auto w2 = d.b.write(std::string(64u << 20, 'u'));  // too large for close()'s one send
    d.b.close(os(ECONNABORTED));
    EXPECT_TRUE(d.b.closed());
    EXPECT_FALSE(d.b.reading());
    EXPECT_FALSE(d.b.writing());  // false once closed
    EXPECT_EQ(d.b.error(), os(ECONNABORTED));
    auto e = co_await failure_of([&] { return std::move(r2); });
    EXPECT_TRUE(closed_with(e, os(ECONNABORTED)));
    e = co_await failure_of([&] { return std::move(w2); });
    EXPECT_TRUE(closed_with(e, os(ECONNABORTED)));
  });
}

// ================================================================== 11. Buffer limit (S42-S45)

TEST_P(stream_test, Overflow_ClosesWithBufferFullKeepsBuffer_S42) {
  each_transport([](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t, with_max_buffer(100));  // chunks of 50
    bool called = false;
    p.s.set_close_callback([&called] { called = true; });
    std::string data = pattern_bytes(200);
    p.peer.send(data);
    auto e = co_await failure_of([&] { return p.s.read_until("\n"); });
    EXPECT_TRUE(closed_with(e, errc::buffer_full));
    EXPECT_TRUE(p.s.closed());
    EXPECT_EQ(p.s.error(), errc::buffer_full);
    EXPECT_EQ(p.s.buffered_bytes(), 150u);  // the overflowing chunk is kept
    std::string kept = co_await p.s.read_bytes(150);
    EXPECT_EQ(kept, data.substr(0, 150));
    EXPECT_TRUE(co_await eventually([&] { return called; }));
  });
}

TEST_P(stream_test, Overflow_BoundaryDependsOnChunks_S43) {
  each_transport([](transport t) -> task<void> {
    struct boundary_case {
      std::size_t n;
      bool succeeds;
      bool closes;
    };
    for (boundary_case c : {boundary_case{100, true, false}, boundary_case{101, true, true},
                            boundary_case{150, true, true}, boundary_case{151, false, true}}) {
      SCOPED_TRACE("read_bytes(" + std::to_string(c.n) + ")");
      auto p = co_await with_raw_peer(t, with_max_buffer(100));
      std::string data = pattern_bytes(200, 9);
      p.peer.send(data);
      auto e = co_await failure_of([&]() -> task<void> {
        std::string got = co_await p.s.read_bytes(c.n);
        EXPECT_EQ(got, data.substr(0, c.n));
      });
      if (c.succeeds) {
        EXPECT_EQ(e, nullptr) << describe(e);
      } else {
        EXPECT_TRUE(closed_with(e, errc::buffer_full));
      }
      EXPECT_EQ(p.s.closed(), c.closes);
      if (c.closes) {
        EXPECT_EQ(p.s.error(), errc::buffer_full);
        EXPECT_EQ(p.s.buffered_bytes(), 150u - (c.succeeds ? c.n : 0));
      }
    }
  });
}

TEST_P(stream_test, ReadUntil_CompletesAtFirstSatisfyingAppend_S44) {
  each_transport([](transport t) -> task<void> {
    {  // the line is in the first chunk: nothing more is read
      auto p = co_await with_raw_peer(t, with_max_buffer(100));
      p.peer.send("line\n" + std::string(195, 'x'));
      std::string line = co_await p.s.read_until("\n");
      EXPECT_EQ(line, "line\n");
      co_await turns(5);
      EXPECT_FALSE(p.s.closed());
      EXPECT_EQ(p.s.buffered_bytes(), 45u);
    }
    {  // the append that completes the read also overflows: completes, then closed
      auto p = co_await with_raw_peer(t, with_max_buffer(100));
      p.peer.send(std::string(120, 'a') + "\n" + std::string(79, 'b'));
      std::string line = co_await p.s.read_until("\n");
      EXPECT_EQ(line, std::string(120, 'a') + "\n");
      EXPECT_TRUE(p.s.closed());
      EXPECT_EQ(p.s.error(), errc::buffer_full);
      EXPECT_EQ(p.s.buffered_bytes(), 29u);
    }
  });
}

TEST_P(stream_test, PipelinedLinesWithinLimit_NeverOverflow_D3) {
  each_transport([](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t, with_max_buffer(100));
    std::string data;
    for (int i = 0; i < 40; ++i) data += "line " + std::to_string(100 + i) + "\n";  // 9 bytes
    p.peer.send(data);
    for (int i = 0; i < 40; ++i) {
      std::string line = co_await p.s.read_until("\n", 20);
      EXPECT_EQ(line, "line " + std::to_string(100 + i) + "\n");
      CO_ASSERT_TRUE(!p.s.closed());
    }
  });
}

task<void> write_all(tcp_stream* s, std::string data) { co_await s->write(std::move(data)); }

TEST_P(stream_test, FlowControl_SmallReadsThroughSmallBuffer_S45) {
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t, with_max_buffer(10 << 10));
    std::string data = pattern_bytes(100 << 10, 4);
    auto writer = corio::start(write_all(&d.a, data));
    std::string got;
    for (int i = 0; i < 100; ++i) {
      got += co_await d.b.read_bytes(1024);
      CO_ASSERT_TRUE(!d.b.closed());
      CO_ASSERT_TRUE(d.b.buffered_bytes() <= (10u << 10));
    }
    EXPECT_TRUE(got == data);
    co_await std::move(writer);
  });
}

TEST_P(stream_test, Overflow_AlwaysStreamClosedErrorWithErrorSet_D4) {
  each_transport([](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t, with_max_buffer(100));
    p.peer.send(std::string(200, 'r'));
    auto e = co_await failure_of([&] { return p.s.read_until_regex("\n"); });
    EXPECT_TRUE(closed_with(e, errc::buffer_full));
    EXPECT_FALSE(as<stream_buffer_full_error>(e).has_value());
    EXPECT_EQ(p.s.error(), errc::buffer_full);
  });
}

TEST_P(stream_test, ReadUntilClose_OverflowFailsBufferDrainable_D5) {
  each_transport([](transport t) -> task<void> {
    auto p = co_await with_raw_peer(t, with_max_buffer(100));
    std::string data = pattern_bytes(200, 2);
    p.peer.send(data);
    auto e = co_await failure_of([&] { return p.s.read_until_close(); });
    EXPECT_TRUE(closed_with(e, errc::buffer_full));
    EXPECT_EQ(p.s.buffered_bytes(), 150u);
    std::string drained;
    for (;;) {
      auto part = co_await failure_of(
          [&]() -> task<void> { drained += co_await p.s.read_bytes(64, true); });
      if (part) {
        EXPECT_TRUE(closed_with(part, errc::buffer_full));
        break;
      }
    }
    EXPECT_EQ(drained, data.substr(0, 150));
  });
}

// ================================================================== D7, fds

TEST_P(stream_test, CallTimeErrors_SurfaceAtCallOrAwait_D7) {
  each_transport([](transport t) -> task<void> {
    stream_options o;
    o.max_write_buffer_size = 2;
    auto d = co_await connected(t, o);
    auto pending = d.b.read_bytes(1);
    // Each of these may throw from the call or from the await: one try covers both.
    auto already = co_await failure_of([&] { return d.b.read_until_close(); });
    auto full = co_await failure_of([&] { return d.a.write("abc"); });
    auto regex = co_await failure_of([&] { return d.a.read_until_regex("("); });
    d.a.close();
    auto closed_write = co_await failure_of([&] { return d.a.write("x"); });
    auto closed_read = co_await failure_of([&] { return d.a.read_until("\n"); });
    EXPECT_TRUE(failed_with<std::logic_error>(already));
    EXPECT_TRUE(failed_with<stream_buffer_full_error>(full));
    EXPECT_TRUE(failed_with<regex_error>(regex));
    EXPECT_TRUE(closed_with(closed_write, none()));
    EXPECT_TRUE(closed_with(closed_read, none()));
    // The pending read is untouched by all of that, and sees the EOF.
    auto e = co_await failure_of([&] { return std::move(pending); });
    EXPECT_TRUE(closed_with(e, none()));
  });
}

TEST_P(stream_test, Destroy_SendsQueuedWritesOnceAsCloseDoes_S36) {
  // `write(x)` and then letting the stream go delivers a small x, as write(x); close() does.
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    {
      tcp_stream leaving = std::move(d.a);
      leaving.write("bye");
    }
    EXPECT_EQ(co_await d.b.read_until_close(), "bye");
  });
}

TEST_P(stream_test, Destroy_AfterACloseItsCallbackStillRunsOnce_S38) {
  // The usual handler: read until the peer closes, then end the coroutine, destroying the
  // stream before the loop ran the close callback the close had already taken.
  each_transport([](transport t) -> task<void> {
    auto d = co_await connected(t);
    int calls = 0;
    {
      tcp_stream s = std::move(d.b);
      s.set_close_callback([&calls] { ++calls; });
      d.a.close();
      try {
        co_await s.read_until("\n");
        ADD_FAILURE() << "read_until completed after the peer closed";
      } catch (const stream_closed_error&) {
      }
    }
    co_await sleep_for(1ms);
    co_await sleep_for(1ms);
    EXPECT_EQ(calls, 1);
  });
}

TEST_P(stream_test, Destroy_LeavesNoFdBehind_S36) {
  int before = corio::testing::open_fd_count();
  run([]() -> task<void> {
    for (transport t : all_transports) {
      {  // ops pending when the streams are destroyed
        auto d = co_await connected(t);
        co_await d.a.write("x");
        std::string x = co_await d.b.read_bytes(1);
        EXPECT_EQ(x, "x");
        auto r = d.b.read_until("\n");
        auto w = d.a.write(std::string(8 << 20, 'w'));
        d.b.set_close_callback([] {});
        d.b = tcp_stream();  // destroying a stream behaves like close()
        auto e = co_await failure_of([&] { return std::move(r); });
        EXPECT_TRUE(closed_with(e, none()));
      }
      {  // closed by both sides, by EOF and reset
        auto p = co_await with_raw_peer(t);
        auto r = p.s.read_until_close();
        if (t == transport::tcp) {
          p.peer.reset();
        } else {
          p.peer.close();
        }
        std::string rest = co_await std::move(r);
        EXPECT_EQ(rest, "");
        p.s.close();
      }
      {  // overflow and unsatisfiable closes
        auto p = co_await with_raw_peer(t, with_max_buffer(100));
        p.peer.send(std::string(200, 'z'));
        auto e = co_await failure_of([&] { return p.s.read_until("\n", 60); });
        EXPECT_TRUE(e != nullptr);
      }
    }
  }());
  EXPECT_EQ(corio::testing::open_fd_count(), before);
}

CORIO_INSTANTIATE_BACKENDS(stream_test);

}  // namespace
