// echo_load: load generator for echo servers (corio_echo and the peers in bench/peers).
//
//   echo_load --port P [--conns N] [--depth D] [--size S] [--seconds T] [--warmup W]
//             [--mode raw|line]
//
// Opens N connections to 127.0.0.1:P and keeps D messages of S bytes in flight on each
// (a new message leaves as soon as an old one is fully echoed), for W seconds of warm-up and
// then T measured seconds. Every echoed byte is checked against what was sent. In line mode
// each message ends with "\r\n" and contains no other CR or LF.
//
// Plain single-threaded epoll (level-triggered) with non-blocking sockets: one recv per
// readable connection and one send per connection per batch, so the client costs about as
// much per message as a good server. Pin it to a different core than the server.
//
// Output: a human line, then one machine-readable line starting with "result:" made of
// key=value pairs (msgs_per_s, mb_per_s, p50_us, p99_us, msgs, total_msgs, load_cpu_pct...).
// Exit status 1 on a verification failure or a connection lost during the run.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct load_options {
  std::uint16_t port = 0;
  int conns = 1;
  int depth = 1;
  std::size_t size = 64;
  double seconds = 5;
  double warmup = 0.25;
  bool line = false;
};

std::int64_t now_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "echo_load: %s\n", what.c_str());
  std::exit(1);
}

/// Latency histogram, log-linear: exact below 128 ns, then 128 buckets per power of two
/// (under 1% error), up to hours.
class histogram {
 public:
  histogram() : buckets_(bucket_count, 0) {}
  void add(std::int64_t ns) {
    ++buckets_[index(ns <= 0 ? 0 : static_cast<std::uint64_t>(ns))];
    ++count_;
  }
  std::uint64_t count() const { return count_; }
  /// The latency (µs) below which a fraction q of the samples lie (bucket upper edge).
  double quantile_us(double q) const {
    if (count_ == 0) return 0;
    auto rank = static_cast<std::uint64_t>(q * static_cast<double>(count_ - 1)) + 1;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
      seen += buckets_[i];
      if (seen >= rank) return static_cast<double>(upper_edge(i)) / 1000.0;
    }
    return static_cast<double>(upper_edge(bucket_count - 1)) / 1000.0;
  }

 private:
  static constexpr unsigned sub_bits = 7;  // 128 sub-buckets per power of two
  static constexpr std::size_t sub_count = std::size_t{1} << sub_bits;
  static constexpr std::size_t bucket_count = (64 - sub_bits + 1) * sub_count;
  static std::size_t index(std::uint64_t v) {
    if (v < sub_count) return static_cast<std::size_t>(v);
    unsigned shift = static_cast<unsigned>(63 - __builtin_clzll(v)) - sub_bits;
    return (shift + 1) * sub_count + static_cast<std::size_t>((v >> shift) - sub_count);
  }
  static std::uint64_t upper_edge(std::size_t i) {
    if (i < sub_count) return i + 1;
    std::size_t shift = i / sub_count - 1;
    return (static_cast<std::uint64_t>(i % sub_count + sub_count) + 1) << shift;
  }
  std::vector<std::uint64_t> buckets_;
  std::uint64_t count_ = 0;
};

/// The bytes a connection sends: a block of `messages` distinct messages repeated forever,
/// stored twice in a row so that any range up to one block long is contiguous.
class payload {
 public:
  payload(std::size_t size, bool line) : size_(size) {
    std::size_t messages = std::max<std::size_t>(1, std::min<std::size_t>(64, (4u << 20) / size));
    block_ = messages * size;
    bytes_.resize(2 * block_);
    std::mt19937 rng(12345);
    for (std::size_t m = 0; m < messages; ++m) {
      char* msg = bytes_.data() + m * size;
      for (std::size_t i = 0; i < size; ++i) {
        // Line mode: printable text without CR/LF, then "\r\n".
        msg[i] = line ? static_cast<char>('!' + rng() % 94) : static_cast<char>(rng());
      }
      if (line) {
        msg[size - 2] = '\r';
        msg[size - 1] = '\n';
      }
    }
    std::memcpy(bytes_.data() + block_, bytes_.data(), block_);
  }
  std::size_t block() const { return block_; }
  /// The byte stream at absolute offset `offset` of a connection starting at message `first`.
  const char* at(std::uint64_t offset, std::size_t first) const {
    return bytes_.data() + (offset + first * size_) % block_;
  }
  std::size_t messages() const { return block_ / size_; }

 private:
  std::size_t size_;
  std::size_t block_;
  std::vector<char> bytes_;
};

struct connection {
  int fd = -1;
  std::size_t first = 0;                // which message of the block this connection starts with
  std::uint64_t bytes_wanted = 0;       // bytes of all messages issued so far
  std::uint64_t bytes_sent = 0;         // bytes accepted by the kernel
  std::uint64_t bytes_received = 0;     // echoed bytes received and verified
  std::uint64_t issued = 0;             // messages issued
  std::uint64_t completed = 0;          // messages fully echoed
  std::vector<std::int64_t> issued_at;  // ring of depth timestamps, by message index % depth
  bool watching_output = false;
};

class load_client {
 public:
  explicit load_client(const load_options& o) : o_(o), payload_(o.size, o.line) {}

  int run() {
    connect_all();
    std::int64_t start = now_ns();
    measure_from_ = start + static_cast<std::int64_t>(o_.warmup * 1e9);
    std::int64_t end = measure_from_ + static_cast<std::int64_t>(o_.seconds * 1e9);
    for (auto& c : conns_) issue(c, start);
    std::vector<epoll_event> events(1024);
    rusage before{};
    ::getrusage(RUSAGE_SELF, &before);
    for (;;) {
      int n = ::epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), 5);
      if (n < 0) {
        if (errno == EINTR) continue;
        die(std::string("epoll_wait: ") + std::strerror(errno));
      }
      std::int64_t now = now_ns();
      if (now >= end) break;
      for (int i = 0; i < n; ++i) {
        connection& c = conns_[events[i].data.u32];
        if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c, now);
        if (events[i].events & EPOLLOUT) send_pending(c);
      }
    }
    std::int64_t finished = now_ns();
    rusage after{};
    ::getrusage(RUSAGE_SELF, &after);
    report(finished, before, after);
    for (auto& c : conns_) ::close(c.fd);
    return 0;
  }

 private:
  void connect_all() {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) die(std::string("epoll_create1: ") + std::strerror(errno));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(o_.port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    conns_.resize(static_cast<std::size_t>(o_.conns));
    for (std::size_t i = 0; i < conns_.size(); ++i) {
      connection& c = conns_[i];
      c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (c.fd < 0) die(std::string("socket: ") + std::strerror(errno));
      if (::connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        die("connect to 127.0.0.1:" + std::to_string(o_.port) + " (connection " +
            std::to_string(i) + "): " + std::strerror(errno));
      }
      int one = 1;
      ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      ::fcntl(c.fd, F_SETFL, ::fcntl(c.fd, F_GETFL) | O_NONBLOCK);
      c.first = i % payload_.messages();
      c.issued_at.assign(static_cast<std::size_t>(o_.depth), 0);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = static_cast<std::uint32_t>(i);
      if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, c.fd, &ev) != 0) {
        die(std::string("epoll_ctl: ") + std::strerror(errno));
      }
    }
  }

  /// Tops the connection up to `depth` messages in flight and sends them.
  void issue(connection& c, std::int64_t now) {
    const auto depth = static_cast<std::uint64_t>(o_.depth);
    while (c.issued < c.completed + depth) {
      c.issued_at[c.issued % depth] = now;
      ++c.issued;
      c.bytes_wanted += o_.size;
    }
    send_pending(c);
  }

  void send_pending(connection& c) {
    while (c.bytes_sent < c.bytes_wanted) {
      std::size_t n = static_cast<std::size_t>(
          std::min<std::uint64_t>(c.bytes_wanted - c.bytes_sent, payload_.block()));
      ssize_t rc = ::send(c.fd, payload_.at(c.bytes_sent, c.first), n, MSG_NOSIGNAL);
      if (rc < 0) {
        if (errno == EAGAIN) break;
        if (errno == EINTR) continue;
        die("send on connection " + std::to_string(&c - conns_.data()) + ": " +
            std::strerror(errno));
      }
      c.bytes_sent += static_cast<std::uint64_t>(rc);
    }
    bool blocked = c.bytes_sent < c.bytes_wanted;
    if (blocked != c.watching_output) {
      epoll_event ev{};
      ev.events = EPOLLIN | (blocked ? std::uint32_t{EPOLLOUT} : 0u);
      ev.data.u32 = static_cast<std::uint32_t>(&c - conns_.data());
      ::epoll_ctl(epfd_, EPOLL_CTL_MOD, c.fd, &ev);
      c.watching_output = blocked;
    }
  }

  void on_readable(connection& c, std::int64_t now) {
    ssize_t rc = ::recv(c.fd, buffer_.data(), buffer_.size(), 0);
    if (rc < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      die("recv on connection " + std::to_string(&c - conns_.data()) + ": " + std::strerror(errno));
    }
    if (rc == 0) die("connection " + std::to_string(&c - conns_.data()) + " closed by the server");
    auto n = static_cast<std::uint64_t>(rc);
    if (c.bytes_received + n > c.bytes_sent) {
      die("connection " + std::to_string(&c - conns_.data()) + ": received more bytes than sent");
    }
    // Verify, in pieces no longer than one payload block (contiguous in the doubled block).
    for (std::uint64_t done = 0; done < n;) {
      std::size_t piece =
          static_cast<std::size_t>(std::min<std::uint64_t>(n - done, payload_.block()));
      const char* expected = payload_.at(c.bytes_received + done, c.first);
      if (std::memcmp(buffer_.data() + done, expected, piece) != 0) {
        std::size_t i = 0;
        while (buffer_[done + i] == expected[i]) ++i;
        die("connection " + std::to_string(&c - conns_.data()) + ": echoed byte at offset " +
            std::to_string(c.bytes_received + done + i) + " differs from the byte sent");
      }
      done += piece;
    }
    c.bytes_received += n;
    const auto depth = static_cast<std::uint64_t>(o_.depth);
    std::uint64_t now_completed = c.bytes_received / o_.size;
    bool measuring = now >= measure_from_;
    for (; c.completed < now_completed; ++c.completed) {
      ++total_messages_;
      if (measuring) {
        latency_.add(now - c.issued_at[c.completed % depth]);
      }
    }
    issue(c, now);
  }

  void report(std::int64_t finished, const rusage& before, const rusage& after) {
    double window = static_cast<double>(finished - measure_from_) / 1e9;
    if (window <= 0) window = 1e-9;
    double msgs = static_cast<double>(latency_.count());
    double rate = msgs / window;
    double mbps = rate * static_cast<double>(o_.size) / 1e6;
    auto cpu_us = [](const rusage& r) {
      return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 +
             static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
    };
    double load_cpu = (cpu_us(after) - cpu_us(before)) / (window + o_.warmup) / 1e4;
    double p50 = latency_.quantile_us(0.50);
    double p99 = latency_.quantile_us(0.99);
    std::printf(
        "echo_load: %d conns x depth %d, %zu-byte %s messages, %.2f s: %.0f msgs/s, %.1f MB/s, "
        "p50 %.1f us, p99 %.1f us (load CPU %.0f%%)\n",
        o_.conns, o_.depth, o_.size, o_.line ? "line" : "raw", window, rate, mbps, p50, p99,
        load_cpu);
    std::printf(
        "result: msgs_per_s=%.0f mb_per_s=%.2f p50_us=%.1f p99_us=%.1f msgs=%.0f total_msgs=%llu "
        "seconds=%.3f load_cpu_pct=%.0f\n",
        rate, mbps, p50, p99, msgs, static_cast<unsigned long long>(total_messages_), window,
        load_cpu);
    std::fflush(stdout);
  }

  load_options o_;
  payload payload_;
  std::vector<connection> conns_;
  std::vector<char> buffer_ = std::vector<char>(256 << 10);
  int epfd_ = -1;
  std::int64_t measure_from_ = 0;
  histogram latency_;
  std::uint64_t total_messages_ = 0;
};

load_options parse_arguments(int argc, char** argv) {
  load_options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(std::string(arg) + " needs a value");
      return argv[++i];
    };
    if (arg == "--port") {
      o.port = static_cast<std::uint16_t>(std::stoi(value()));
    } else if (arg == "--conns") {
      o.conns = std::stoi(value());
    } else if (arg == "--depth") {
      o.depth = std::stoi(value());
    } else if (arg == "--size") {
      o.size = std::stoul(value());
    } else if (arg == "--seconds") {
      o.seconds = std::stod(value());
    } else if (arg == "--warmup") {
      o.warmup = std::stod(value());
    } else if (arg == "--mode") {
      std::string m = value();
      if (m != "raw" && m != "line") throw std::invalid_argument("--mode: raw or line");
      o.line = m == "line";
    } else {
      throw std::invalid_argument("unknown argument " + std::string(arg));
    }
  }
  if (o.port == 0) throw std::invalid_argument("--port is required");
  if (o.conns < 1 || o.depth < 1 || o.seconds <= 0 || o.warmup < 0) {
    throw std::invalid_argument("--conns, --depth, --seconds must be positive");
  }
  if (o.size < (o.line ? 3u : 1u)) throw std::invalid_argument("--size too small");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  load_options o;
  try {
    o = parse_arguments(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr,
                 "echo_load: %s\nusage: echo_load --port P [--conns N] [--depth D] [--size S] "
                 "[--seconds T] [--warmup W] [--mode raw|line]\n",
                 e.what());
    return 2;
  }
  // Many connections need many fds: raise the soft limit to the hard one.
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
  load_client client(o);
  return client.run();
}
