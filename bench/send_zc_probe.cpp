// send_zc_probe: is io_uring's zero-copy send (IORING_OP_SEND_ZC) cheaper than a plain
// IORING_OP_SEND for large writes over loopback TCP? Standalone (liburing, no corio).
//
//   send_zc_probe [--mode send|zc|zcfixed] [--size N[,N...]] [--seconds S] [--warmup S]
//                 [--inflight K] [--buffers B] [--no-waitall]
//                 [--sender-cpu C] [--receiver-cpu C]
//
// For each size: a connected 127.0.0.1 TCP pair; a receiver thread drains its end with a
// plain blocking recv() loop into a 1 MiB buffer; the sender thread keeps K (default 4) sends
// of `size` bytes in flight on the other end with one io_uring (SINGLE_ISSUER|DEFER_TASKRUN
// when the kernel has them, one io_uring_submit_and_wait per turn). The sends take B buffers
// in turn (default B = K); B > K models a library that keeps one send in flight per stream
// but may give the next send other memory while the kernel still holds the last buffer.
// Each send carries MSG_WAITALL, so the kernel retries a short send itself, unless
// --no-waitall (corio's sendmsg sets no MSG_WAITALL); a short completion is resubmitted for
// the rest. With K > 1 the sends leave in no fixed order: fine for counting bytes, not for a
// stream (a library keeps one in flight). Modes:
//   send     IORING_OP_SEND (the kernel copies the buffer into the socket's skbs)
//   zc       IORING_OP_SEND_ZC: the kernel pins the pages and sends from them; the request
//            completes with IORING_CQE_F_MORE, and a second CQE with IORING_CQE_F_NOTIF says
//            the kernel no longer uses the buffer (TCP holds the pages until the data is
//            acknowledged) -- a buffer is reused only after its notification.
//            IORING_SEND_ZC_REPORT_USAGE asks the kernel whether it had to copy after all;
//            the share of notifications that say so is printed (zc_copied).
//   zcfixed  SEND_ZC from buffers registered with io_uring_register_buffers (no page pinning
//            per send: the best case for zero copy).
// Bytes sent are not checked (each buffer is written once).
//
// Measured over S seconds (default 1) after W seconds of warm-up (default 0.2): bytes the
// receiver got, and the time on CPU (/proc/self/task/TID/schedstat, field 1) of the sender
// and receiver threads; on loopback the sender's send also runs the receiving side of TCP
// (softirq in its context: this kernel has no IRQ_TIME_ACCOUNTING), the receiver's recv
// copies the data out. ksoftirqd's CPU over the same window is printed separately (softirq
// work deferred to it belongs to no thread, and it includes other processes' traffic).
// Default pinning: sender on CPU 1, receiver on CPU 0 (when both are available; -1: none).
//
// Output per size: a human line, then "result: key=value ..." with size, inflight, buffers,
// gb_per_s, sender_ns_per_byte, receiver_ns_per_byte, total_ns_per_byte (sender +
// receiver), ksoftirqd_ns_per_byte, zc_copied (share of notifications that reported a copy;
// -1 when not zc), bytes, seconds. Exit status 1 on an error.
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

// Newer than liburing 2.3's headers (Linux 6.2+).
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

namespace {

enum class send_mode { send, zc, zcfixed };

struct options {
  send_mode mode = send_mode::send;
  std::vector<std::size_t> sizes{4096, 65536, 262144, 1048576};
  double seconds = 1.0;
  double warmup = 0.2;
  int inflight = 4;
  int buffers = 0;  // 0: as many as inflight
  int send_flags = MSG_WAITALL | MSG_NOSIGNAL;
  int sender_cpu = -2;  // -2: default (1 if available), -1: not pinned
  int receiver_cpu = -2;
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "send_zc_probe: %s\n", what.c_str());
  std::exit(1);
}

[[noreturn]] void die_errno(const std::string& what, int err) {
  die(what + ": " + std::strerror(err));
}

const char* mode_name(send_mode m) {
  switch (m) {
    case send_mode::send:
      return "send";
    case send_mode::zc:
      return "zc";
    case send_mode::zcfixed:
      return "zcfixed";
  }
  return "?";
}

double now_s() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Time on CPU of one thread of this process, in ns (schedstat field 1).
std::uint64_t thread_cpu_ns(pid_t tid) {
  std::string path = "/proc/self/task/" + std::to_string(tid) + "/schedstat";
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return 0;
  unsigned long long ns = 0;
  if (std::fscanf(f, "%llu", &ns) != 1) ns = 0;
  std::fclose(f);
  return ns;
}

// Every ksoftirqd/N thread of the system, for their CPU time over the window.
std::vector<pid_t> ksoftirqd_pids() {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    std::string path = std::string("/proc/") + e->d_name + "/comm";
    FILE* f = std::fopen(path.c_str(), "r");
    if (!f) continue;
    char comm[64] = {};
    if (std::fgets(comm, sizeof comm, f) && std::strncmp(comm, "ksoftirqd/", 10) == 0)
      out.push_back(static_cast<pid_t>(pid));
    std::fclose(f);
  }
  closedir(d);
  return out;
}

std::uint64_t pids_cpu_ns(const std::vector<pid_t>& pids) {
  std::uint64_t total = 0;
  for (pid_t pid : pids) {
    std::string path = "/proc/" + std::to_string(pid) + "/schedstat";
    FILE* f = std::fopen(path.c_str(), "r");
    if (!f) continue;
    unsigned long long ns = 0;
    if (std::fscanf(f, "%llu", &ns) == 1) total += ns;
    std::fclose(f);
  }
  return total;
}

void pin_self(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (int rc = pthread_setaffinity_np(pthread_self(), sizeof set, &set); rc != 0)
    die_errno("pthread_setaffinity_np", rc);
}

pid_t my_tid() { return static_cast<pid_t>(syscall(SYS_gettid)); }

// A connected loopback TCP pair: {sender end, receiver end}.
std::pair<int, int> tcp_pair() {
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0) die_errno("socket", errno);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die_errno("bind", errno);
  if (listen(lfd, 1) != 0) die_errno("listen", errno);
  if (getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    die_errno("getsockname", errno);
  int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (cfd < 0) die_errno("socket", errno);
  if (connect(cfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    die_errno("connect", errno);
  int afd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  if (afd < 0) die_errno("accept", errno);
  close(lfd);
  int one = 1;
  setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return {cfd, afd};
}

struct shared_state {
  std::atomic<std::uint64_t> received{0};
  std::atomic<pid_t> sender_tid{0};
  std::atomic<pid_t> receiver_tid{0};
  std::atomic<bool> stop{false};
  std::string error;  // set by the sender before it ends
  std::uint64_t notifs = 0;
  std::uint64_t notifs_copied = 0;
};

void receiver_main(int fd, int cpu, shared_state& st) {
  pin_self(cpu);
  st.receiver_tid.store(my_tid());
  std::vector<char> buf(1 << 20);
  for (;;) {
    ssize_t n = recv(fd, buf.data(), buf.size(), 0);
    if (n > 0) {
      st.received.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;  // EOF (the sender shut down) or an error
  }
}

struct slot {
  char* buf = nullptr;
  std::size_t off = 0;   // bytes of the current message already sent
  bool pending = false;  // a send CQE is still to come
  int notifs = 0;        // notifications still to come (SEND_ZC)
};

void sender_main(int fd, int cpu, const options& opt, std::size_t size, shared_state& st) {
  pin_self(cpu);
  st.sender_tid.store(my_tid());
  io_uring ring{};
  io_uring_params p{};
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  int rc = io_uring_queue_init_params(64, &ring, &p);
  if (rc == -EINVAL) {
    p = io_uring_params{};
    rc = io_uring_queue_init_params(64, &ring, &p);
  }
  if (rc < 0) die_errno("io_uring_queue_init_params", -rc);

  std::vector<slot> slots(static_cast<std::size_t>(std::max(opt.buffers, opt.inflight)));
  std::vector<iovec> iovs;
  for (auto& s : slots) {
    void* mem = nullptr;
    if (posix_memalign(&mem, 4096, size) != 0) die("out of memory");
    s.buf = static_cast<char*>(mem);
    std::memset(s.buf, 'x', size);
    iovs.push_back({s.buf, size});
  }
  if (opt.mode == send_mode::zcfixed) {
    rc = io_uring_register_buffers(&ring, iovs.data(), static_cast<unsigned>(iovs.size()));
    if (rc < 0) die_errno("io_uring_register_buffers", -rc);
  }

  auto submit = [&](std::size_t i) {
    slot& s = slots[i];
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    if (!sqe) die("submission queue full");
    char* from = s.buf + s.off;
    std::size_t len = size - s.off;
    if (opt.mode == send_mode::send) {
      io_uring_prep_send(sqe, fd, from, len, opt.send_flags);
    } else if (opt.mode == send_mode::zc) {
      io_uring_prep_send_zc(sqe, fd, from, len, opt.send_flags, IORING_SEND_ZC_REPORT_USAGE);
    } else {
      io_uring_prep_send_zc_fixed(sqe, fd, from, len, opt.send_flags, IORING_SEND_ZC_REPORT_USAGE,
                                  static_cast<unsigned>(i));
    }
    io_uring_sqe_set_data64(sqe, i);
    s.pending = true;
  };

  bool stopping = false;
  std::size_t next = 0;  // the buffers are used in turn
  int in_flight = 0;
  for (;;) {
    if (!stopping && st.stop.load(std::memory_order_relaxed)) stopping = true;
    // Start sends while fewer than K are in flight and the next buffer is free again.
    while (!stopping && in_flight < opt.inflight && !slots[next].pending &&
           slots[next].notifs == 0) {
      slots[next].off = 0;
      submit(next);
      ++in_flight;
      next = (next + 1) % slots.size();
    }
    bool busy = false;
    for (const slot& s : slots) busy = busy || s.pending || s.notifs != 0;
    if (!busy) break;  // stopping, and the kernel holds no buffer any more
    rc = io_uring_submit_and_wait(&ring, 1);
    if (rc < 0 && rc != -EINTR) die_errno("io_uring_submit_and_wait", -rc);
    io_uring_cqe* cqe = nullptr;
    unsigned head = 0, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      ++seen;
      auto i = static_cast<std::size_t>(io_uring_cqe_get_data64(cqe));
      slot& s = slots[i];
      if (cqe->flags & IORING_CQE_F_NOTIF) {
        --s.notifs;  // the kernel is done with the buffer
        ++st.notifs;
        if (static_cast<std::uint32_t>(cqe->res) & IORING_NOTIF_USAGE_ZC_COPIED) ++st.notifs_copied;
        continue;
      }
      s.pending = false;
      --in_flight;
      if (cqe->flags & IORING_CQE_F_MORE) ++s.notifs;
      if (cqe->res < 0) {
        st.error = std::string("send: ") + std::strerror(-cqe->res);
        stopping = true;
        continue;
      }
      s.off += static_cast<std::size_t>(cqe->res);
      // A short send (should not happen with MSG_WAITALL): send the rest from the same slot.
      // With SEND_ZC the first part's buffer is still the kernel's until its notification,
      // but the rest is a different range of it, so it may go now.
      if (s.off < size && !stopping) {
        submit(i);
        ++in_flight;
      }
    }
    io_uring_cq_advance(&ring, seen);
  }
  if (opt.mode == send_mode::zcfixed) io_uring_unregister_buffers(&ring);
  io_uring_queue_exit(&ring);
  for (auto& s : slots) std::free(s.buf);
  shutdown(fd, SHUT_WR);
}

struct sample {
  double t;
  std::uint64_t bytes, sender_ns, receiver_ns, softirq_ns;
};

int run_size(const options& opt, std::size_t size) {
  auto [sfd, rfd] = tcp_pair();
  shared_state st;
  std::thread receiver(receiver_main, rfd, opt.receiver_cpu, std::ref(st));
  std::thread sender(sender_main, sfd, opt.sender_cpu, std::cref(opt), size, std::ref(st));
  while (st.sender_tid.load() == 0 || st.receiver_tid.load() == 0) std::this_thread::yield();
  std::vector<pid_t> softirqd = ksoftirqd_pids();
  auto snap = [&] {
    return sample{now_s(), st.received.load(), thread_cpu_ns(st.sender_tid.load()),
                  thread_cpu_ns(st.receiver_tid.load()), pids_cpu_ns(softirqd)};
  };
  auto sleep_for = [](double s) {
    timespec ts{static_cast<time_t>(s),
                static_cast<long>((s - static_cast<double>(static_cast<time_t>(s))) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  };
  sleep_for(opt.warmup);
  sample a = snap();
  sleep_for(opt.seconds);
  sample b = snap();
  st.stop.store(true);
  sender.join();
  receiver.join();
  close(sfd);
  close(rfd);
  if (!st.error.empty()) {
    std::fprintf(stderr, "send_zc_probe: %s\n", st.error.c_str());
    return 1;
  }
  double secs = b.t - a.t;
  auto bytes = static_cast<double>(b.bytes - a.bytes);
  if (bytes <= 0) {
    std::fprintf(stderr, "send_zc_probe: no bytes received in the window\n");
    return 1;
  }
  double snd = static_cast<double>(b.sender_ns - a.sender_ns) / bytes;
  double rcv = static_cast<double>(b.receiver_ns - a.receiver_ns) / bytes;
  double sirq = static_cast<double>(b.softirq_ns - a.softirq_ns) / bytes;
  double copied = opt.mode == send_mode::send || st.notifs == 0
                      ? -1.0
                      : static_cast<double>(st.notifs_copied) / static_cast<double>(st.notifs);
  std::printf(
      "%-7s size %8zu inflight %d buffers %zu: %6.2f GB/s  CPU ns/byte sender %.4f receiver %.4f "
      "total %.4f (ksoftirqd %.4f)%s\n",
      mode_name(opt.mode), size, opt.inflight,
      static_cast<std::size_t>(std::max(opt.buffers, opt.inflight)), bytes / secs / 1e9, snd, rcv,
      snd + rcv, sirq,
      copied < 0 ? "" : (copied > 0.5 ? "  [kernel copied: zc_copied]" : "  [zero copy]"));
  std::printf(
      "result: size=%zu inflight=%d buffers=%zu gb_per_s=%.6f sender_ns_per_byte=%.6f "
      "receiver_ns_per_byte=%.6f total_ns_per_byte=%.6f ksoftirqd_ns_per_byte=%.6f "
      "zc_copied=%.4f bytes=%.0f seconds=%.4f\n",
      size, opt.inflight, static_cast<std::size_t>(std::max(opt.buffers, opt.inflight)),
      bytes / secs / 1e9, snd, rcv, snd + rcv, sirq, copied, bytes, secs);
  std::fflush(stdout);
  return 0;
}

std::vector<std::size_t> parse_sizes(const char* text) {
  std::vector<std::size_t> out;
  std::string s(text);
  std::size_t pos = 0;
  while (pos <= s.size()) {
    std::size_t comma = s.find(',', pos);
    std::string item = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    char* end = nullptr;
    unsigned long long v = std::strtoull(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v == 0 || v > (1ULL << 30)) die("bad --size: " + item);
    out.push_back(static_cast<std::size_t>(v));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

options parse(int argc, char** argv) {
  options opt;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) die("missing value after " + a);
      return argv[++i];
    };
    if (a == "--mode") {
      std::string m = value();
      if (m == "send")
        opt.mode = send_mode::send;
      else if (m == "zc")
        opt.mode = send_mode::zc;
      else if (m == "zcfixed")
        opt.mode = send_mode::zcfixed;
      else
        die("bad --mode: " + m + " (send, zc or zcfixed)");
    } else if (a == "--size") {
      opt.sizes = parse_sizes(value());
    } else if (a == "--seconds") {
      opt.seconds = std::atof(value());
    } else if (a == "--warmup") {
      opt.warmup = std::atof(value());
    } else if (a == "--inflight") {
      opt.inflight = std::atoi(value());
    } else if (a == "--no-waitall") {
      opt.send_flags = MSG_NOSIGNAL;
    } else if (a == "--buffers") {
      opt.buffers = std::atoi(value());
    } else if (a == "--sender-cpu") {
      opt.sender_cpu = std::atoi(value());
    } else if (a == "--receiver-cpu") {
      opt.receiver_cpu = std::atoi(value());
    } else if (a == "-h" || a == "--help") {
      std::printf(
          "usage: send_zc_probe [--mode send|zc|zcfixed] [--size N[,N...]] "
          "[--seconds S] [--warmup S] [--inflight K] [--buffers B] [--no-waitall] "
          "[--sender-cpu C] "
          "[--receiver-cpu C]\n");
      std::exit(0);
    } else {
      die("unknown option " + a);
    }
  }
  if (opt.seconds <= 0 || opt.warmup < 0 || opt.inflight < 1 || opt.inflight > 16 ||
      opt.buffers < 0 || opt.buffers > 64)
    die("--seconds > 0, --warmup >= 0, 1 <= --inflight <= 16, 0 <= --buffers <= 64");
  cpu_set_t set;
  CPU_ZERO(&set);
  bool two =
      sched_getaffinity(0, sizeof set, &set) == 0 && CPU_ISSET(0, &set) && CPU_ISSET(1, &set);
  if (opt.sender_cpu == -2) opt.sender_cpu = two ? 1 : -1;
  if (opt.receiver_cpu == -2) opt.receiver_cpu = two ? 0 : -1;
  return opt;
}

}  // namespace

int main(int argc, char** argv) {
  options opt = parse(argc, argv);
  int status = 0;
  for (std::size_t size : opt.sizes) status |= run_size(opt, size);
  return status;
}
