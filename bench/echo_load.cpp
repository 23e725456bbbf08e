// echo_load: load generator for echo servers (corio_echo and the peers in bench/peers).
//
//   echo_load --port P [--conns N] [--depth D] [--size S] [--seconds T] [--warmup W]
//             [--mode raw|line] [--engine auto|uring|epoll] [--print-engine]
//
// Opens N connections to 127.0.0.1:P and keeps D messages of S bytes in flight on each
// (a new message leaves as soon as an old one is fully echoed), for W seconds of warm-up and
// then T measured seconds. Every echoed byte is checked against what was sent. In line mode
// each message ends with "\r\n" and contains no other CR or LF.
//
// Two engines drive the same connections with the same bookkeeping, checks and output; pin
// either to a different core than the server:
//   uring  liburing: one multishot recv per connection into a provided-buffer ring, at most
//          one send in flight per connection (straight from the payload), every send of a
//          turn queued first and handed over with one io_uring_submit_and_wait per turn
//          (SINGLE_ISSUER|DEFER_TASKRUN when the kernel has them). The cheaper client.
//   epoll  level-triggered epoll, non-blocking sockets: one recv per readable connection and
//          one send per connection per batch, so it costs about as much per message as a
//          good server.
// auto (the default) is uring when the kernel supports it (Linux 6.0+: multishot recv and
// provided-buffer rings), otherwise epoll. --print-engine prints the engine auto (or the
// --engine given) resolves to, and exits.
//
// Output: a human line, then one machine-readable line starting with "result:" made of
// key=value pairs (msgs_per_s, mb_per_s, p50_us, p99_us, msgs, total_msgs, load_cpu_pct...).
// Exit status 1 on a verification failure or a connection lost during the run.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/utsname.h>
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

enum class engine_kind { automatic, uring, epoll };

struct load_options {
  std::uint16_t port = 0;
  int conns = 1;
  int depth = 1;
  std::size_t size = 64;
  double seconds = 5;
  double warmup = 0.25;
  bool line = false;
  engine_kind engine = engine_kind::automatic;
  bool print_engine = false;
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
  bool watching_output = false;         // epoll: EPOLLOUT requested
  std::size_t send_in_flight = 0;       // uring: bytes of the send the kernel holds (0: none)
  bool send_queued = false;             // uring: listed in to_send_ for this turn
};

/// Linux 6.0 or later: multishot recv (6.0) and provided-buffer rings (5.19).
bool kernel_has_multishot_recv() {
  utsname u{};
  if (::uname(&u) != 0) return false;
  int major = 0;
  if (std::sscanf(u.release, "%d.", &major) != 1) return false;
  return major >= 6;
}

/// The engine that `requested` resolves to on this machine: automatic picks uring when the
/// kernel has what the uring engine needs and a ring can be set up, else epoll.
engine_kind resolve_engine(engine_kind requested) {
  if (requested != engine_kind::automatic) return requested;
  if (!kernel_has_multishot_recv()) return engine_kind::epoll;
  io_uring probe{};
  if (::io_uring_queue_init(8, &probe, 0) != 0) return engine_kind::epoll;  // e.g. seccomp, sysctl
  ::io_uring_queue_exit(&probe);
  return engine_kind::uring;
}

const char* engine_name(engine_kind e) { return e == engine_kind::uring ? "io_uring" : "epoll"; }

class load_client {
 public:
  explicit load_client(const load_options& o) : o_(o), payload_(o.size, o.line) {}

  int run() {
    connect_all();
    if (o_.engine == engine_kind::uring) {
      setup_ring();
    } else {
      setup_epoll();
    }
    std::int64_t start = now_ns();
    measure_from_ = start + static_cast<std::int64_t>(o_.warmup * 1e9);
    std::int64_t end = measure_from_ + static_cast<std::int64_t>(o_.seconds * 1e9);
    rusage before{};
    ::getrusage(RUSAGE_SELF, &before);
    if (o_.engine == engine_kind::uring) {
      run_uring(start, end);
    } else {
      run_epoll(start, end);
    }
    std::int64_t finished = now_ns();
    rusage after{};
    ::getrusage(RUSAGE_SELF, &after);
    report(finished, before, after);
    if (o_.engine == engine_kind::uring) ::io_uring_queue_exit(&ring_);  // cancels the receives
    for (auto& c : conns_) ::close(c.fd);
    return 0;
  }

 private:
  // --- shared by both engines --------------------------------------------------------------

  void connect_all() {
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
      c.first = i % payload_.messages();
      c.issued_at.assign(static_cast<std::size_t>(o_.depth), 0);
    }
  }

  std::string name(const connection& c) const {
    return "connection " + std::to_string(&c - conns_.data());
  }

  /// Tops the connection up to `depth` messages in flight (bookkeeping only: the engine
  /// sends bytes_sent..bytes_wanted).
  void top_up(connection& c, std::int64_t now) {
    const auto depth = static_cast<std::uint64_t>(o_.depth);
    while (c.issued < c.completed + depth) {
      c.issued_at[c.issued % depth] = now;
      ++c.issued;
      c.bytes_wanted += o_.size;
    }
  }

  /// Checks n echoed bytes against the payload, counts the messages they complete (latency
  /// from their issue to `now`) and tops the connection up. `handed_over` is every byte the
  /// kernel has taken for sending so far: more cannot come back.
  void received(connection& c, const char* data, std::uint64_t n, std::uint64_t handed_over,
                std::int64_t now) {
    if (c.bytes_received + n > handed_over) die(name(c) + ": received more bytes than sent");
    // Verify, in pieces no longer than one payload block (contiguous in the doubled block).
    for (std::uint64_t done = 0; done < n;) {
      std::size_t piece =
          static_cast<std::size_t>(std::min<std::uint64_t>(n - done, payload_.block()));
      const char* expected = payload_.at(c.bytes_received + done, c.first);
      if (std::memcmp(data + done, expected, piece) != 0) {
        std::size_t i = 0;
        while (data[done + i] == expected[i]) ++i;
        die(name(c) + ": echoed byte at offset " + std::to_string(c.bytes_received + done + i) +
            " differs from the byte sent");
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
    top_up(c, now);
  }

  // --- epoll engine ------------------------------------------------------------------------

  void setup_epoll() {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) die(std::string("epoll_create1: ") + std::strerror(errno));
    for (std::size_t i = 0; i < conns_.size(); ++i) {
      ::fcntl(conns_[i].fd, F_SETFL, ::fcntl(conns_[i].fd, F_GETFL) | O_NONBLOCK);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = static_cast<std::uint32_t>(i);
      if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, conns_[i].fd, &ev) != 0) {
        die(std::string("epoll_ctl: ") + std::strerror(errno));
      }
    }
  }

  void run_epoll(std::int64_t start, std::int64_t end) {
    for (auto& c : conns_) {
      top_up(c, start);
      send_pending(c);
    }
    std::vector<epoll_event> events(1024);
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
    ::close(epfd_);
  }

  void send_pending(connection& c) {
    while (c.bytes_sent < c.bytes_wanted) {
      std::size_t n = static_cast<std::size_t>(
          std::min<std::uint64_t>(c.bytes_wanted - c.bytes_sent, payload_.block()));
      ssize_t rc = ::send(c.fd, payload_.at(c.bytes_sent, c.first), n, MSG_NOSIGNAL);
      if (rc < 0) {
        if (errno == EAGAIN) break;
        if (errno == EINTR) continue;
        die("send on " + name(c) + ": " + std::strerror(errno));
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
      die("recv on " + name(c) + ": " + std::strerror(errno));
    }
    if (rc == 0) die(name(c) + " closed by the server");
    received(c, buffer_.data(), static_cast<std::uint64_t>(rc), c.bytes_sent, now);
    send_pending(c);
  }

  // --- io_uring engine ---------------------------------------------------------------------

  static constexpr std::uint16_t buffer_group = 1;
  static constexpr std::size_t buffer_size = 16 * 1024;
  enum op_type : std::uint64_t { op_recv = 0, op_send = 1 };  // user_data: index << 1 | type

  void run_uring(std::int64_t start, std::int64_t end) {
    for (auto& c : conns_) {
      arm_recv(c);
      top_up(c, start);
      queue_send(c);
    }
    __kernel_timespec tick{.tv_sec = 0, .tv_nsec = 5'000'000};  // as epoll's 5 ms wait
    for (;;) {
      flush_sends();
      io_uring_cqe* first = nullptr;
      int rc = ::io_uring_submit_and_wait_timeout(&ring_, &first, 1, &tick, nullptr);
      if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY) {
        die(std::string("io_uring_submit_and_wait_timeout: ") + std::strerror(-rc));
      }
      std::int64_t now = now_ns();
      if (now >= end) break;
      unsigned head = 0, seen = 0;
      io_uring_cqe* cqe = nullptr;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        on_completion(*cqe, now);
        ++seen;
      }
      ::io_uring_cq_advance(&ring_, seen);
    }
  }

  void setup_ring() {
    // Room for a send and a re-armed recv per connection per turn; get_sqe submits early if
    // a turn ever needs more. Multishot receives can post many completions: a larger CQ.
    unsigned entries = 64;
    while (entries < 2 * conns_.size() + 16 && entries < 16384) entries *= 2;
    io_uring_params params{};
    params.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    params.cq_entries = 4 * entries;
    int rc = ::io_uring_queue_init_params(entries, &ring_, &params);
    if (rc == -EINVAL) {  // before Linux 6.1: no DEFER_TASKRUN
      params = {};
      params.flags = IORING_SETUP_CQSIZE;
      params.cq_entries = 4 * entries;
      rc = ::io_uring_queue_init_params(entries, &ring_, &params);
    }
    if (rc < 0) die(std::string("io_uring_queue_init_params: ") + std::strerror(-rc));

    // Enough provided buffers that one turn's receives rarely run out (ENOBUFS only re-arms).
    buffer_count_ = 256;
    while (buffer_count_ < 2 * conns_.size() && buffer_count_ < 16384) buffer_count_ *= 2;
    std::size_t ring_bytes = buffer_count_ * sizeof(io_uring_buf);
    void* mem =
        ::mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) die(std::string("mmap: ") + std::strerror(errno));
    buf_ring_ = static_cast<io_uring_buf_ring*>(mem);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uint64_t>(buf_ring_);
    reg.ring_entries = static_cast<std::uint32_t>(buffer_count_);
    reg.bgid = buffer_group;
    rc = ::io_uring_register_buf_ring(&ring_, &reg, 0);
    if (rc < 0) die(std::string("io_uring_register_buf_ring: ") + std::strerror(-rc));
    recv_buffers_.resize(buffer_count_ * buffer_size);
    ::io_uring_buf_ring_init(buf_ring_);
    for (std::size_t i = 0; i < buffer_count_; ++i) {
      ::io_uring_buf_ring_add(buf_ring_, recv_buffers_.data() + i * buffer_size, buffer_size,
                              static_cast<unsigned short>(i),
                              ::io_uring_buf_ring_mask(static_cast<unsigned>(buffer_count_)),
                              static_cast<int>(i));
    }
    ::io_uring_buf_ring_advance(buf_ring_, static_cast<int>(buffer_count_));
  }

  io_uring_sqe* get_sqe() {
    io_uring_sqe* sqe = ::io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
      ::io_uring_submit(&ring_);
      sqe = ::io_uring_get_sqe(&ring_);
      if (sqe == nullptr) die("io_uring_get_sqe: submission queue full");
    }
    return sqe;
  }

  std::uint64_t tag(const connection& c, op_type type) const {
    return static_cast<std::uint64_t>(&c - conns_.data()) << 1 | type;
  }

  void arm_recv(connection& c) {
    io_uring_sqe* sqe = get_sqe();
    ::io_uring_prep_recv_multishot(sqe, c.fd, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = buffer_group;
    ::io_uring_sqe_set_data64(sqe, tag(c, op_recv));
  }

  /// Lists the connection for this turn's sends (one per connection, prepared at the end of
  /// the turn so that every completion of the turn has topped it up first).
  void queue_send(connection& c) {
    if (c.send_queued || c.send_in_flight != 0 || c.bytes_sent == c.bytes_wanted) return;
    c.send_queued = true;
    to_send_.push_back(static_cast<std::uint32_t>(&c - conns_.data()));
  }

  void flush_sends() {
    for (std::uint32_t i : to_send_) {
      connection& c = conns_[i];
      c.send_queued = false;
      std::size_t n = static_cast<std::size_t>(
          std::min<std::uint64_t>(c.bytes_wanted - c.bytes_sent, payload_.block()));
      io_uring_sqe* sqe = get_sqe();
      ::io_uring_prep_send(sqe, c.fd, payload_.at(c.bytes_sent, c.first), n, MSG_NOSIGNAL);
      ::io_uring_sqe_set_data64(sqe, tag(c, op_send));
      c.send_in_flight = n;
    }
    to_send_.clear();
  }

  void recycle(unsigned short id) {
    ::io_uring_buf_ring_add(buf_ring_, recv_buffers_.data() + std::size_t{id} * buffer_size,
                            buffer_size, id,
                            ::io_uring_buf_ring_mask(static_cast<unsigned>(buffer_count_)), 0);
    ::io_uring_buf_ring_advance(buf_ring_, 1);
  }

  void on_completion(const io_uring_cqe& cqe, std::int64_t now) {
    connection& c = conns_[cqe.user_data >> 1];
    if ((cqe.user_data & 1) == op_send) {
      if (cqe.res < 0) die("send on " + name(c) + ": " + std::strerror(-cqe.res));
      c.bytes_sent += static_cast<std::uint64_t>(cqe.res);
      c.send_in_flight = 0;
      queue_send(c);  // a short send's rest, or messages issued meanwhile
      return;
    }
    if (cqe.res > 0) {
      auto id = static_cast<unsigned short>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
      received(c, recv_buffers_.data() + std::size_t{id} * buffer_size,
               static_cast<std::uint64_t>(cqe.res), c.bytes_sent + c.send_in_flight, now);
      recycle(id);
      queue_send(c);
    } else if (cqe.flags & IORING_CQE_F_BUFFER) {
      recycle(static_cast<unsigned short>(cqe.flags >> IORING_CQE_BUFFER_SHIFT));
    }
    if (cqe.flags & IORING_CQE_F_MORE) return;
    if (cqe.res == 0) die(name(c) + " closed by the server");
    if (cqe.res < 0 && cqe.res != -ENOBUFS) {
      die("recv on " + name(c) + ": " + std::strerror(-cqe.res));
    }
    arm_recv(c);  // out of provided buffers, or the kernel ended the multishot: go on
  }

  // --- report ------------------------------------------------------------------------------

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
        "echo_load (%s): %d conns x depth %d, %zu-byte %s messages, %.2f s: %.0f msgs/s, "
        "%.1f MB/s, p50 %.1f us, p99 %.1f us (load CPU %.0f%%)\n",
        engine_name(o_.engine), o_.conns, o_.depth, o_.size, o_.line ? "line" : "raw", window, rate,
        mbps, p50, p99, load_cpu);
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
  std::int64_t measure_from_ = 0;
  histogram latency_;
  std::uint64_t total_messages_ = 0;
  // epoll
  std::vector<char> buffer_ = std::vector<char>(256 << 10);
  int epfd_ = -1;
  // io_uring
  io_uring ring_{};
  io_uring_buf_ring* buf_ring_ = nullptr;
  std::size_t buffer_count_ = 0;
  std::vector<char> recv_buffers_;
  std::vector<std::uint32_t> to_send_;
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
    } else if (arg == "--engine") {
      std::string e = value();
      if (e == "auto") {
        o.engine = engine_kind::automatic;
      } else if (e == "uring" || e == "io_uring") {
        o.engine = engine_kind::uring;
      } else if (e == "epoll") {
        o.engine = engine_kind::epoll;
      } else {
        throw std::invalid_argument("--engine: auto, uring or epoll");
      }
    } else if (arg == "--print-engine") {
      o.print_engine = true;
    } else {
      throw std::invalid_argument("unknown argument " + std::string(arg));
    }
  }
  if (o.port == 0 && !o.print_engine) throw std::invalid_argument("--port is required");
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
                 "[--seconds T] [--warmup W] [--mode raw|line] [--engine auto|uring|epoll] "
                 "[--print-engine]\n",
                 e.what());
    return 2;
  }
  o.engine = resolve_engine(o.engine);
  if (o.print_engine) {
    std::printf("%s\n", o.engine == engine_kind::uring ? "uring" : "epoll");
    return 0;
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
