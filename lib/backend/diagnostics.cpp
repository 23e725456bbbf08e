// corio::diagnostics(): probes io_uring the way uring_backend does and says what it found.
#include "corio/diagnostics.hpp"

#include <liburing.h>
#include <sys/utsname.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "corio/loop.hpp"
#include "corio/version.hpp"

namespace corio {
namespace {

std::string read_first_line(const char* path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return "(not present)";
  return line;
}

const char* yes(bool b) { return b ? "yes" : "no"; }

}  // namespace

std::string diagnostics() {
  std::ostringstream out;
  utsname u{};
  ::uname(&u);
  out << "corio " << version_string << "\n";
  out << "kernel: " << u.sysname << " " << u.release << " " << u.machine << "\n";
  out << "kernel.io_uring_disabled: " << read_first_line("/proc/sys/kernel/io_uring_disabled")
      << "\n";
  const char* off = std::getenv("CORIO_DISABLE_IO_URING");
  out << "CORIO_DISABLE_IO_URING: " << (off ? off : "(unset)") << "\n";

  io_uring ring{};
  io_uring_params params{};
  params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  int rc = io_uring_queue_init_params(8, &ring, &params);
  bool defer = rc == 0;
  if (rc == -EINVAL) {
    params = {};
    rc = io_uring_queue_init_params(8, &ring, &params);
  }
  if (rc < 0) {
    out << "io_uring: cannot create a ring: " << std::strerror(-rc) << "\n";
    out << "corio uses: epoll (backend::automatic falls back; backend::io_uring throws)\n";
    return out.str();
  }
  out << "io_uring: ring created\n";
  out << "  SINGLE_ISSUER|DEFER_TASKRUN (Linux 6.1): " << yes(defer) << "\n";
  out << "  features: NODROP=" << yes(params.features & IORING_FEAT_NODROP)
      << " EXT_ARG=" << yes(params.features & IORING_FEAT_EXT_ARG)
      << " FAST_POLL=" << yes(params.features & IORING_FEAT_FAST_POLL) << "\n";
  io_uring_buf_reg reg{};
  void* mem = std::aligned_alloc(4096, 4096);
  reg.ring_addr = reinterpret_cast<std::uint64_t>(mem);
  reg.ring_entries = 8;
  reg.bgid = 1;
  bool buf_ring = io_uring_register_buf_ring(&ring, &reg, 0) == 0;
  if (buf_ring) io_uring_unregister_buf_ring(&ring, 1);
  std::free(mem);
  out << "  provided buffer rings (Linux 5.19): " << yes(buf_ring)
      << (buf_ring ? "" : " -> receives use per-operation scratch buffers") << "\n";
  if (io_uring_probe* probe = io_uring_get_probe_ring(&ring)) {
    struct named {
      int op;
      const char* name;
      bool needed;  // uring_backend refuses a ring without it
    } ops[] = {
        {IORING_OP_RECV, "RECV", true},        {IORING_OP_SEND, "SEND", true},
        {IORING_OP_SENDMSG, "SENDMSG", true},  {IORING_OP_READ, "READ", true},
        {IORING_OP_WRITE, "WRITE", true},      {IORING_OP_ACCEPT, "ACCEPT", true},
        {IORING_OP_CONNECT, "CONNECT", true},  {IORING_OP_POLL_ADD, "POLL_ADD", true},
        {IORING_OP_TIMEOUT, "TIMEOUT", true},  {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL", true},
        {IORING_OP_SEND_ZC, "SEND_ZC", false}, {IORING_OP_SOCKET, "SOCKET", false}};
    out << "  opcodes:";
    bool all_needed = true;
    for (const named& n : ops) {
      bool ok = io_uring_opcode_supported(probe, n.op);
      out << " " << n.name << "=" << yes(ok);
      if (n.needed && !ok) all_needed = false;
    }
    out << "\n";
    io_uring_free_probe(probe);
    if (!all_needed) out << "  (an opcode corio needs is missing: it would fall back to epoll)\n";
  }
  io_uring_queue_exit(&ring);
  try {
    event_loop loop({.backend = corio::backend::automatic});
    out << "corio uses: " << to_string(loop.backend()) << " (backend::automatic)\n";
  } catch (const std::exception& e) {
    out << "corio cannot create a loop: " << e.what() << "\n";
  }
  return out.str();
}

}  // namespace corio
