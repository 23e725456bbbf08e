// scan_bench: delimiter-search scaling of read_until (architecture.md "Performance design",
// stream-semantics.md §17.5.2). A header of S bytes with no "\r\n\r\n" until its very end is
// written at once by the peer, while the reading stream has read_chunk_size = 64, so the
// delimiter search runs after each of S/64 appends. With a resumed scan the total work is
// O(S) and ns/byte stays flat as S grows; rescanning from the start would be O(S^2 / 64).
//
// Usage: scan_bench [--quick] [--chunk N] [--reps N]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "corio/corio.hpp"

using namespace corio;

namespace {

struct config {
  bool quick = false;
  std::size_t chunk = 64;
  int reps = 3;
};

task<double> time_one(std::size_t size, std::size_t chunk) {
  stream_options reader_options;
  reader_options.read_chunk_size = chunk;
  auto [writer, reader] = stream_pair(reader_options);
  std::string header(size - 4, 'a');
  for (std::size_t i = 37; i < header.size(); i += 61) header[i] = (i % 3 == 0) ? '\r' : '\n';
  header += "\r\n\r\n";
  auto started = std::chrono::steady_clock::now();
  task<void> sending = writer.write(std::move(header));  // goes out as the reader drains
  std::string got = co_await reader.read_until("\r\n\r\n");
  auto elapsed = std::chrono::steady_clock::now() - started;
  co_await std::move(sending);
  if (got.size() != size) {
    std::fprintf(stderr, "scan_bench: got %zu bytes, expected %zu\n", got.size(), size);
    std::exit(1);
  }
  co_return std::chrono::duration<double, std::milli>(elapsed).count();
}

double best_of(backend b, std::size_t size, const config& cfg) {
  loop_options options;
  options.backend = b;
  event_loop loop(options);
  double best = 1e300;
  for (int i = 0; i < cfg.reps; ++i) best = std::min(best, loop.run(time_one(size, cfg.chunk)));
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  config cfg;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      cfg.quick = true;
      cfg.reps = 1;
    } else if (std::strcmp(argv[i], "--chunk") == 0 && i + 1 < argc) {
      cfg.chunk = std::strtoul(argv[++i], nullptr, 10);
    } else if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
      cfg.reps = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--quick] [--chunk N] [--reps N]\n", argv[0]);
      return 2;
    }
  }
  std::vector<std::size_t> sizes = {64 << 10, 256 << 10, 1 << 20};
  if (!cfg.quick) sizes.push_back(4 << 20);

  std::printf(
      "read_until(\"\\r\\n\\r\\n\") over a %zu-byte read_chunk_size, header written at once "
      "(best of %d)\n",
      cfg.chunk, cfg.reps);
  std::printf("%10s %12s %12s %16s %14s\n", "size", "io_uring ms", "epoll ms", "io_uring ns/B",
              "epoll ns/B");
  for (std::size_t size : sizes) {
    double uring = best_of(backend::io_uring, size, cfg);
    double epoll = best_of(backend::epoll, size, cfg);
    std::printf("%7zu KiB %12.2f %12.2f %16.1f %14.1f\n", size >> 10, uring, epoll,
                uring * 1e6 / static_cast<double>(size), epoll * 1e6 / static_cast<double>(size));
  }
  return 0;
}
