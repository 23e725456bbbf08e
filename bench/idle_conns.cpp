// idle_conns: what an idle connection costs an echo server, in bytes of its resident memory.
//
//   idle_conns --port P --pid PID [--conns N] [--size S]
//
// Reads the server's VmRSS (/proc/PID/status), opens N connections to 127.0.0.1:P, makes one
// round trip of S bytes on each (so the server has done the work a live connection does:
// accepted it, read and written on it), waits for the server to settle, and reads VmRSS again.
// The connections stay open, idle, while the second sample is taken.
//
// Output: a human line, then "result: conns=N rss_before_kb=... rss_after_kb=...
// bytes_per_conn=..." (bench/table.py reads it). Exit status 1 when a connection fails or an
// echo does not match.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

struct options {
  std::uint16_t port = 0;
  long pid = 0;
  int conns = 10000;
  std::size_t size = 64;
};

long resident_kib(long pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  throw std::runtime_error("no VmRSS for pid " + std::to_string(pid));
}

int connect_blocking(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    int err = errno;
    ::close(fd);
    throw std::runtime_error(std::string("connect: ") + std::strerror(err));
  }
  return fd;
}

// One round trip on every connection, all in flight together: write everywhere, then read.
void round_trip(const std::vector<int>& fds, std::size_t size) {
  std::string message(size, 'x');
  for (int fd : fds) {
    if (::send(fd, message.data(), size, MSG_NOSIGNAL) != static_cast<ssize_t>(size)) {
      throw std::runtime_error(std::string("send: ") + std::strerror(errno));
    }
  }
  std::string echo(size, '\0');
  for (int fd : fds) {
    std::size_t got = 0;
    while (got < size) {
      ssize_t n = ::recv(fd, echo.data() + got, size - got, 0);
      if (n <= 0) throw std::runtime_error("recv: connection lost before the echo");
      got += static_cast<std::size_t>(n);
    }
    if (echo != message) throw std::runtime_error("echo mismatch");
  }
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (i + 1 >= argc) throw std::invalid_argument(std::string(arg) + " needs a value");
    long value = std::strtol(argv[++i], nullptr, 10);
    if (arg == "--port") {
      o.port = static_cast<std::uint16_t>(value);
    } else if (arg == "--pid") {
      o.pid = value;
    } else if (arg == "--conns") {
      o.conns = static_cast<int>(value);
    } else if (arg == "--size") {
      o.size = static_cast<std::size_t>(value);
    } else {
      throw std::invalid_argument("unknown argument " + std::string(arg));
    }
  }
  if (o.port == 0 || o.pid == 0) throw std::invalid_argument("--port and --pid are required");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  try {
    o = parse(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "idle_conns: %s\nusage: idle_conns --port P --pid PID [--conns N]\n",
                 e.what());
    return 2;
  }
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
  std::vector<int> fds;
  try {
    // Warm the server up first (its loop, pools and first-use allocations are not
    // per-connection costs), then take the baseline.
    fds.push_back(connect_blocking(o.port));
    round_trip(fds, o.size);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    long before = resident_kib(o.pid);
    while (static_cast<int>(fds.size()) < o.conns + 1) fds.push_back(connect_blocking(o.port));
    round_trip(fds, o.size);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    long after = resident_kib(o.pid);
    double per_conn = (after - before) * 1024.0 / o.conns;
    std::printf("%d idle connections: server RSS %ld -> %ld KiB, %.0f bytes per connection\n",
                o.conns, before, after, per_conn);
    std::printf("result: conns=%d rss_before_kb=%ld rss_after_kb=%ld bytes_per_conn=%.0f\n",
                o.conns, before, after, per_conn);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "idle_conns: %s (after %zu connections)\n", e.what(), fds.size());
    for (int fd : fds) ::close(fd);
    return 1;
  }
  for (int fd : fds) ::close(fd);
  return 0;
}
