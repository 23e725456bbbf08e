// lib/backend/fault_backend.hpp - a fault-injecting wrapper around a real backend (tests only).
//
// Not part of the public API. A test installs a fault_plan on its thread with
// scoped_fault_plan; every event_loop constructed on that thread while it is installed wraps
// its real backend (io_uring or epoll) in a fault_backend driven by the plan's seeded random
// schedule:
//   - short I/O: recv/read lengths, send/write lengths and sendmsg iovecs clamped, down to
//     1 byte;
//   - transient failures (EAGAIN / EINTR): the op is held back for 1-3 loop turns, then
//     issued for real: the backend retries transparently (architecture.md rule 4), the
//     requester sees only a delay;
//   - hard errors: a data op completes with -ECONNRESET (reads) or -EPIPE/-ECONNRESET (writes)
//     without touching the kernel, at random (error_rate) or exactly at the fail_at-th data op
//     (the B5 fail_count sweep);
//   - late completions: a completion is delivered 1-3 turns after the real one;
//   - late cancels: a cancel is forwarded to the real backend 1-3 turns later, so the op may
//     complete with its real (successful) result after the cancel was requested.
// With fault_plan::multishot the real backend keeps its multishot receives (io_uring). Their
// requests pass through this wrapper (as timeouts do); the real backend asks the plan for
// their faults instead (backend.hpp, multishot_faults):
//   - short receives: an answer from the bytes a multishot brought is clamped (short_io,
//     one_byte), the rest stays held for the next receive;
//   - ends, as the kernel ends a multishot: at a data completion the live multishot is
//     cancelled for real, and its final completion reports -ECANCELED or -ENOBUFS
//     (multishot_end; the backend re-arms, or receives into scratch memory) or -ECONNRESET
//     (multishot_error, by default error_rate; reported to the stream after the bytes held
//     before it).
// The other ops' faults (short and failed sends, late completions and cancels, bulk streams'
// single-shot receives) run around them. Not faulted then: the completions of multishot
// answers (never late), a stream's single-shot first receive (submitted as a multishot one)
// and the single-shot receive the real backend issues itself when a stream leaves multishot;
// data_ops (so fail_at) counts no multishot receive.
// ENOBUFS from an exhausted buffer ring is produced for real by the io_uring backend when the
// loop is given few provided buffers (loop_options::recv_buffer_count).
// CORIO_FAULT_TRACE=1 prints every submit, cancel and real completion to stderr.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "backend/backend.hpp"

namespace corio::detail {

/// What a fault_backend did (summed over every loop that used the plan).
struct fault_counts {
  std::uint64_t ops = 0;                 ///< ops submitted through the wrapper
  std::uint64_t data_ops = 0;            ///< recv/read/send/write/sendmsg among them
  std::uint64_t short_io = 0;            ///< lengths clamped
  std::uint64_t one_byte = 0;            ///< ... to a single byte
  std::uint64_t transient = 0;           ///< EAGAIN/EINTR simulated (op held, then retried)
  std::uint64_t errors = 0;              ///< hard errors injected
  std::uint64_t late_completions = 0;    ///< completions delivered late
  std::uint64_t late_cancels = 0;        ///< cancels forwarded late
  std::uint64_t cancels = 0;             ///< cancels requested
  std::uint64_t multishot_answers = 0;   ///< receives answered from multishot bytes
  std::uint64_t multishot_ends = 0;      ///< multishots ended (ECANCELED/ENOBUFS/ECONNRESET)
  std::vector<unsigned> setup_attempts;  ///< io_uring setup flags of each ring setup attempt
};

/// The schedule. Probabilities are per op; all draws come from one generator seeded by seed.
struct fault_plan {
  std::uint64_t seed = 1;
  double short_io = 0.5;         ///< clamp a data op's length
  double one_byte = 0.3;         ///< given a clamp, clamp to exactly 1 byte
  double transient = 0.1;        ///< hold an op back (EAGAIN/EINTR, retried)
  double late_completion = 0.1;  ///< deliver a completion late
  double late_cancel = 0.5;      ///< forward a cancel late
  double error_rate = 0.0;       ///< hard error on a data op
  long long fail_at = -1;        ///< hard error on exactly this data op (0-based), -1: none
  /// Let the real backend use multishot receives (io_uring, Linux 6.0+), faulted from inside
  /// (short answers, ends; see above). Off: every receive is a single-shot one.
  bool multishot = false;
  double multishot_end = 0.1;   ///< end a live multishot at a data completion (ECANCELED/ENOBUFS)
  double multishot_error = -1;  ///< ... with ECONNRESET instead (negative: error_rate)
  /// D4/D2: asked before each io_uring ring setup attempt with its IORING_SETUP_* flags; a
  /// negative errno fails that attempt as the kernel would (e.g. -EINVAL for flags an old
  /// kernel does not know), 0 lets it proceed. Empty: every attempt proceeds.
  std::function<int(unsigned flags)> reject_setup;
  fault_counts counts;
};

/// Installs `plan` for the event loops constructed on this thread during its lifetime.
class scoped_fault_plan {
 public:
  explicit scoped_fault_plan(std::shared_ptr<fault_plan> plan);
  ~scoped_fault_plan();
  scoped_fault_plan(const scoped_fault_plan&) = delete;
  scoped_fault_plan& operator=(const scoped_fault_plan&) = delete;

 private:
  std::shared_ptr<fault_plan> previous_;
};

/// Called by the io_uring backend before each ring setup attempt: records the attempt in the
/// installed plan and returns its reject_setup verdict (0 when no plan is installed).
int fault_setup_attempt(unsigned flags);

/// Wraps `inner` in a fault_backend driven by `plan`.
std::unique_ptr<backend_base> make_fault_backend(event_loop& loop,
                                                 std::unique_ptr<backend_base> inner,
                                                 std::shared_ptr<fault_plan> plan);

}  // namespace corio::detail
