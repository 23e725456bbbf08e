// The io_uring backend: batch SQEs, one io_uring_enter per loop turn, provided buffers for
// receives so the kernel never writes into memory a cancelled coroutine could free.
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "backend/backend.hpp"
#include "backend/fault_backend.hpp"
#include "spare_strings.hpp"
#include "string_fill.hpp"

namespace corio::detail {
namespace {

constexpr std::uint64_t cancel_tag = 0;  // CQEs of cancel requests: nothing to do
constexpr std::uint64_t wake_tag = 1;    // the eventfd read that post() completes
constexpr std::uint64_t stage_operation = 0;
constexpr std::uint64_t stage_poll_first = 2;  // waiting for readiness after -EAGAIN
constexpr int buffer_group = 7;

// io_op::multishot_state bits of a multishot receive.
constexpr std::uint16_t ms_armed = 1;      // a multishot recv is live in the kernel
constexpr std::uint16_t ms_wanted = 2;     // the requester asked and has not been answered
constexpr std::uint16_t ms_stopping = 4;   // we asked the kernel to end the multishot
constexpr std::uint16_t ms_queued = 8;     // on the serve list, answered at the next reap
constexpr std::uint16_t ms_counted = 16;   // counted in in_flight_
constexpr std::uint16_t ms_scratch = 32;   // a single-shot fallback recv (ring empty) is live
constexpr std::uint16_t ms_bulk = 64;      // stopped for holding a whole receive unread, or
                                           // for a large receive: leaves multishot when quiet
constexpr std::uint16_t ms_settled = 128;  // the stream's first receive chose multishot
constexpr std::uint16_t ms_first = 256;    // (op.multishot false) the single-shot first
                                           // receive of an op that asked for multishot
constexpr int no_end = 1;                  // io_op::multishot_end: no EOF or error kept

/// Multishot recv (IORING_RECV_MULTISHOT) came with Linux 6.0.
bool kernel_has_multishot_recv() noexcept {
  utsname u{};
  int major = 0;
  return ::uname(&u) == 0 && std::sscanf(u.release, "%d", &major) == 1 && major >= 6;
}

std::string explain_setup_failure(int err) {
  std::string text =
      std::string("io_uring unavailable: io_uring_queue_init failed: ") + std::strerror(err);
  if (err == EPERM || err == EACCES) {
    text +=
        " (io_uring is disabled: check the kernel.io_uring_disabled sysctl, a seccomp "
        "policy such as Docker's default, or RLIMIT_MEMLOCK)";
  } else if (err == ENOSYS) {
    text += " (the kernel has no io_uring: Linux 5.11 or later is needed, 6.1 for every feature)";
  } else if (err == ENOMEM) {
    text += " (RLIMIT_MEMLOCK may be too low for the ring)";
  }
  return text;
}

class uring_backend final : public backend_base {
 public:
  uring_backend(event_loop& loop, const loop_options& options) : loop_(loop) {
    ring_.ring_fd = -1;
    if (const char* off = std::getenv("CORIO_DISABLE_IO_URING"); off && *off && *off != '0') {
      throw backend_unavailable_error(
          "io_uring unavailable: disabled by the environment (CORIO_DISABLE_IO_URING=1)");
    }
    io_uring_params params{};
    unsigned depth = options.queue_depth ? options.queue_depth : 4096;
    // Why: SINGLE_ISSUER|DEFER_TASKRUN (Linux 6.1) runs completion work only when we enter,
    // which batches it; older kernels reject the flags with EINVAL and we retry without (D4).
    int rc = setup_ring(depth, params, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
    if (rc == -EINVAL) {
      rc = setup_ring(depth, params, IORING_SETUP_COOP_TASKRUN);
      if (rc == -EINVAL) rc = setup_ring(depth, params, 0);
    }
    if (rc < 0) throw backend_unavailable_error(explain_setup_failure(-rc));
    single_issuer_ = (params.flags & IORING_SETUP_SINGLE_ISSUER) != 0;
    owner_ = std::this_thread::get_id();
    try {
      // Why: without EXT_ARG (Linux < 5.11) liburing implements a timed wait with a timeout
      // SQE of its own whose completion (user_data LIBURING_UDATA_TIMEOUT) reap() would take
      // for an io_op; refuse the ring, so that backend::automatic falls back to epoll.
      if (!(params.features & IORING_FEAT_EXT_ARG)) {
        throw backend_unavailable_error(
            "io_uring unavailable: the kernel lacks IORING_FEAT_EXT_ARG (Linux 5.11 or later is "
            "needed)");
      }
      // B14: a forked child must not inherit the ring's mappings (it would share the parent's
      // SQ/CQ memory); it builds its own loop instead.
      if (int frc = io_uring_ring_dontfork(&ring_); frc < 0) {
        throw backend_unavailable_error(
            std::string("io_uring backend: madvise(DONTFORK) failed: ") + std::strerror(-frc));
      }
      require_opcodes();
      pending_.resize(std::min<std::size_t>(ring_.cq.ring_entries, 256));
      stashed_.reserve(2 * std::size_t(ring_.cq.ring_entries));
      const char* no_sync_cancel = std::getenv("CORIO_NO_SYNC_CANCEL");
      sync_cancel_ = !(no_sync_cancel && *no_sync_cancel && *no_sync_cancel != '0');
      setup_buffer_ring(options);
      const char* no_multishot = std::getenv("CORIO_NO_MULTISHOT");
      multishot_ = buffer_ring_ != nullptr && kernel_has_multishot_recv() &&
                   !(no_multishot && *no_multishot && *no_multishot != '0');
      wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
      if (wake_fd_ < 0) throw backend_unavailable_error("io_uring backend: eventfd failed");
      arm_wake();
    } catch (...) {
      teardown();
      throw;
    }
  }

  ~uring_backend() override { teardown(); }

  corio::backend kind() const noexcept override { return corio::backend::io_uring; }

  void submit(io_op& op) override {
    if (op.multishot) {
      if (op.multishot_state & ms_settled) return request_multishot(op);
      // A stream's first receive is single-shot; its size decides (settle_first_receive).
      op.multishot = false;
      op.multishot_state = ms_first;
    }
    op.backend_tag = stage_operation;
    prepare(op);  // may throw std::bad_alloc (B13): then not counted
    ++in_flight_;
  }

  void cancel(io_op& op) noexcept override {
    if (op.multishot) return serve(op);  // orphaned: drop what it holds, stop it
    submit_cancel(op);
  }

  void cancel_now(io_op& op) noexcept override {
    if (op.multishot) {
      if (!(op.multishot_state & (ms_armed | ms_scratch))) return;  // the kernel has nothing
      op.multishot_state |= ms_stopping;  // the final completion is still delivered later
    }
    if (!sync_cancel_) return cancel_and_wait_for_final_completion(op);
    // Why: the SQE may still sit unsubmitted in the SQ (we batch), where a synchronous cancel
    // cannot see it; submit first so the kernel knows the request.
    flush_submissions();
    io_uring_sync_cancel_reg reg{};
    reg.addr = reinterpret_cast<std::uint64_t>(&op);
    reg.timeout.tv_sec = -1;
    reg.timeout.tv_nsec = -1;
    ++loop_.mutable_stats().syscalls;
    // Linux 6.0+: returns once the request is cancelled or has completed (-ENOENT).
    int rc;
    do {  // B6: a signal interrupts the wait; the op may still be running, so ask again
      rc = io_uring_register_sync_cancel(&ring_, &reg);
    } while (rc == -EINTR);
    if (rc == -EINVAL || rc == -EOPNOTSUPP) {  // older kernel: from now on, the fallback
      sync_cancel_ = false;
      cancel_and_wait_for_final_completion(op);
    }
  }

  void forget_fd(int) noexcept override {}

  void submit_queued() noexcept override { flush_submissions(); }

  bool usable_on_this_thread() const noexcept override {
    return !single_issuer_ || std::this_thread::get_id() == owner_;
  }

  void abandon() noexcept override {
    // Closing the ring fd makes the kernel cancel what is in flight, in its own time; the
    // ring's mappings, the buffer ring and the ops stay allocated for it (leaked).
    if (wake_fd_ >= 0) ::close(std::exchange(wake_fd_, -1));
    if (ring_.ring_fd >= 0) ::close(std::exchange(ring_.ring_fd, -1));
  }

  void wait(std::optional<std::chrono::nanoseconds> timeout) override {
    __kernel_timespec ts{};
    __kernel_timespec* tsp = nullptr;
    if (timeout) {
      ts.tv_sec = timeout->count() / 1'000'000'000;
      ts.tv_nsec = timeout->count() % 1'000'000'000;
      tsp = &ts;
    }
    io_uring_cqe* cqe = nullptr;
    ++loop_.mutable_stats().waits;
    if (serve_head_ != nullptr && io_uring_sq_ready(&ring_) == 0) {
      // Held receive data answers requests without asking the kernel anything.
      reap();
      return;
    }
    ++loop_.mutable_stats().syscalls;
    int rc;
    if (timeout && timeout->count() <= 0) {
      // Why: waiting for 1 CQE with a zero timespec arms an hrtimer and sleeps until it fires,
      // timer slack included (~45 us on Linux 6.x), on every turn that has work queued.
      // Submitting with GETEVENTS and min_complete = 0 (which also runs DEFER_TASKRUN work)
      // never sleeps.
      rc = io_uring_submit_and_get_events(&ring_);
    } else {
      rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, tsp, nullptr);
    }
    if (rc == -EBUSY) ++loop_.mutable_stats().cq_backlog;
    // Why -EBADR: the kernel (5.19+) reports once that it dropped completions it could not
    // allocate overflow entries for (counted in koverflow, hence stats().cq_overflow);
    // nothing brings them back, and throwing out of run() would not help either.
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN && rc != -EBADR) {
      throw error(std::string("io_uring_submit_and_wait_timeout failed: ") + std::strerror(-rc),
                  std::error_code(-rc, std::generic_category()));
    }
    reap();
  }

  bool has_ready_completions() const noexcept override {
    return pending_head_ < pending_count_ || !stashed_.empty() || serve_head_ != nullptr;
  }

  void wake() noexcept override {
    std::uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof one);
  }

  std::size_t in_flight() const noexcept override { return in_flight_; }

  bool supports_multishot_recv() const noexcept override { return multishot_; }
  void set_multishot_faults(multishot_faults* faults) noexcept override { faults_ = faults; }

 private:
  void submit_cancel(io_op& op) noexcept {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_cancel64(sqe, reinterpret_cast<std::uint64_t>(&op), 0);
    io_uring_sqe_set_data64(sqe, cancel_tag);
    ++loop_.mutable_stats().submissions;
  }

  /// cancel_now without a synchronous cancel (Linux < 6.0, or CORIO_NO_SYNC_CANCEL): cancel
  /// asynchronously, then wait until the op's final completion has arrived, handling none
  /// here. Why not handle them: the caller is often the op's own handler, being destroyed
  /// (an awaiter dropped by with_timeout), and handlers run from inside its destructor would
  /// call into it. The completions stay queued, in order, for the next reap; by then the
  /// caller has orphaned the op.
  void cancel_and_wait_for_final_completion(io_op& op) noexcept {
    submit_cancel(op);
    while (!holds_final_completion(op)) {
      // A full CQ takes no more: the completions move aside (in order) to make room.
      if (io_uring_cq_ready(&ring_) == ring_.cq.ring_entries && !stash_completions()) return;
      io_uring_cqe* cqe = nullptr;
      __kernel_timespec ten_ms{0, 10'000'000};
      ++loop_.mutable_stats().syscalls;
      io_uring_submit_and_wait_timeout(&ring_, &cqe, io_uring_cq_ready(&ring_) + 1, &ten_ms,
                                       nullptr);
    }
  }

  /// True if a completion after which the kernel is done with `op` has arrived (and has not
  /// been handled yet): one without IORING_CQE_F_MORE.
  bool holds_final_completion(const io_op& op) noexcept {
    const auto is_final = [&op](std::uint64_t user_data, std::uint32_t flags) {
      return user_data == reinterpret_cast<std::uint64_t>(&op) && !(flags & IORING_CQE_F_MORE);
    };
    for (std::size_t i = pending_head_; i < pending_count_; ++i) {
      if (is_final(pending_[i].user_data, pending_[i].flags)) return true;
    }
    for (const completion& c : stashed_) {
      if (is_final(c.user_data, c.flags)) return true;
    }
    unsigned head;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      if (is_final(cqe->user_data, cqe->flags)) return true;
    }
    return false;
  }

  /// Moves every CQE into stashed_; false if it has no room for them. Without may_grow it
  /// never allocates (its capacity is reserved at setup).
  bool stash_completions(bool may_grow = false) noexcept {
    const unsigned ready = io_uring_cq_ready(&ring_);
    if (stashed_.size() + ready > stashed_.capacity()) {
      if (!may_grow) return false;
      try {
        stashed_.reserve(2 * (stashed_.size() + ready));
      } catch (const std::bad_alloc&) {
        return false;
      }
    }
    unsigned head;
    io_uring_cqe* cqe;
    unsigned seen = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      if (seen == ready) break;  // one posted since: no room reserved for it
      stashed_.push_back({cqe->user_data, cqe->res, cqe->flags});
      ++seen;
    }
    io_uring_cq_advance(&ring_, seen);
    return true;
  }

  /// One io_uring_queue_init_params attempt with `flags` (the fault plan of a test may refuse
  /// it, D4).
  int setup_ring(unsigned depth, io_uring_params& params, unsigned flags) {
    params = {};
    params.flags = flags;
    if (int injected = fault_setup_attempt(flags); injected < 0) return injected;
    return io_uring_queue_init_params(depth, &ring_, &params);
  }

  void require_opcodes() {
    io_uring_probe* probe = io_uring_get_probe_ring(&ring_);
    if (probe == nullptr) throw backend_unavailable_error("io_uring unavailable: probe failed");
    const int needed[] = {IORING_OP_RECV,        IORING_OP_SEND,     IORING_OP_SENDMSG,
                          IORING_OP_READ,        IORING_OP_WRITE,    IORING_OP_ACCEPT,
                          IORING_OP_CONNECT,     IORING_OP_POLL_ADD, IORING_OP_TIMEOUT,
                          IORING_OP_ASYNC_CANCEL};
    for (int opcode : needed) {
      if (!io_uring_opcode_supported(probe, opcode)) {
        io_uring_free_probe(probe);
        throw backend_unavailable_error("io_uring unavailable: the kernel lacks opcode " +
                                        std::to_string(opcode));
      }
    }
    io_uring_free_probe(probe);
  }

  void setup_buffer_ring(const loop_options& options) {
    unsigned count = options.recv_buffer_count ? options.recv_buffer_count : 256;
    // The ring size must be a power of two.
    unsigned entries = 1;
    while (entries < count && entries < 32768) entries <<= 1;
    buffer_count_ = entries;
    buffer_size_ = options.recv_buffer_size ? options.recv_buffer_size : (32 << 10);
    std::size_t ring_bytes = entries * sizeof(io_uring_buf);
    void* mem =
        ::mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) throw backend_unavailable_error("io_uring backend: mmap failed");
    buffer_ring_ = static_cast<io_uring_buf_ring*>(mem);
    buffer_ring_bytes_ = ring_bytes;
    ::madvise(mem, ring_bytes, MADV_DONTFORK);  // B14: shared with the kernel, not with a child
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uint64_t>(mem);
    reg.ring_entries = entries;
    reg.bgid = buffer_group;
    ++loop_.mutable_stats().syscalls;
    int rc = io_uring_register_buf_ring(&ring_, &reg, 0);
    if (rc < 0) {
      // Linux < 5.19: receive into per-op scratch memory instead (owned by the pooled op).
      ::munmap(mem, ring_bytes);
      buffer_ring_ = nullptr;
      return;
    }
    buffers_.reset(new std::byte[std::size_t(entries) * buffer_size_]);
    io_uring_buf_ring_init(buffer_ring_);
    for (unsigned i = 0; i < entries; ++i) {
      io_uring_buf_ring_add(buffer_ring_, buffer_bytes(static_cast<std::uint16_t>(i)),
                            static_cast<unsigned>(buffer_size_), static_cast<unsigned short>(i),
                            io_uring_buf_ring_mask(entries), static_cast<int>(i));
    }
    io_uring_buf_ring_advance(buffer_ring_, static_cast<int>(entries));
  }

  void recycle_buffer(unsigned short id) {
    io_uring_buf_ring_add(buffer_ring_, buffer_bytes(id), static_cast<unsigned>(buffer_size_), id,
                          io_uring_buf_ring_mask(buffer_count_), 0);
    io_uring_buf_ring_advance(buffer_ring_, 1);
  }

  void teardown() noexcept {
    if (wake_fd_ >= 0) ::close(wake_fd_);
    wake_fd_ = -1;
    if (ring_.ring_fd >= 0) {
      if (buffer_ring_ != nullptr) io_uring_unregister_buf_ring(&ring_, buffer_group);
      io_uring_queue_exit(&ring_);
      ring_.ring_fd = -1;
    }
    if (buffer_ring_ != nullptr) ::munmap(buffer_ring_, buffer_ring_bytes_);
    buffer_ring_ = nullptr;
  }

  void flush_submissions() noexcept {
    if (io_uring_sq_ready(&ring_) == 0) return;
    ++loop_.mutable_stats().syscalls;
    int rc = io_uring_submit(&ring_);
    // Kernels before 5.19 refuse submissions (-EBUSY) while completions wait in the CQ
    // overflow backlog. Why move them aside instead of handling them: this runs inside a
    // submit, in the middle of whatever operation asked for an SQE; a handler run here would
    // re-enter a stream half-way through a change (its own read completing inside its send).
    // reap() delivers them later, in order. Only if no memory can be had are they handled here.
    for (int round = 0; rc == -EBUSY && round < 64; ++round) {
      ++loop_.mutable_stats().cq_backlog;
      if (!stash_completions(/*may_grow=*/true)) reap();
      ++loop_.mutable_stats().syscalls;
      rc = io_uring_submit(&ring_);
    }
  }

  io_uring_sqe* get_sqe() noexcept {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    while (sqe == nullptr) {  // C3: the SQ is full; hand it to the kernel and retry.
      ++loop_.mutable_stats().sq_full;
      flush_submissions();
      sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;
  }

  void arm_wake() {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_read(sqe, wake_fd_, &wake_value_, sizeof wake_value_, 0);
    io_uring_sqe_set_data64(sqe, wake_tag);
  }

  /// Issues `op` (again). `ring_empty`: a receive that found every provided buffer taken
  /// (-ENOBUFS) goes into scratch memory of its own this time.
  void prepare(io_op& op, bool ring_empty = false) {
    if (op.kind == op_kind::recv || op.kind == op_kind::read) {
      return prepare_receive(op, ring_empty);
    }
    io_uring_sqe* sqe = get_sqe();
    int fd = op.fd;
    switch (op.kind) {
      case op_kind::recv:
      case op_kind::read:
        break;  // prepare_receive
      case op_kind::send:
        io_uring_prep_send(sqe, fd, op.source, op.length,
                           static_cast<int>(op.flags) | MSG_NOSIGNAL);
        break;
      case op_kind::write:
        io_uring_prep_write(sqe, fd, op.source, static_cast<unsigned>(op.length),
                            static_cast<std::uint64_t>(-1));
        break;
      case op_kind::sendmsg:
        if (op.iov.size() == 1) {
          // Why: a plain SEND skips copying a msghdr and an iovec in from user memory (about
          // 1.3 % of server CPU in a 64-byte echo profile, io_msg_copy_hdr + copy_iovec).
          io_uring_prep_send(sqe, fd, op.iov[0].iov_base, op.iov[0].iov_len,
                             static_cast<int>(op.flags) | MSG_NOSIGNAL);
          break;
        }
        op.message.msg_iov = op.iov.data();
        op.message.msg_iovlen = op.iov.size();
        io_uring_prep_sendmsg(sqe, fd, &op.message, op.flags | MSG_NOSIGNAL);
        break;
      case op_kind::accept:
        op.address_length = sizeof op.address;
        io_uring_prep_accept(sqe, fd, reinterpret_cast<sockaddr*>(&op.address), &op.address_length,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
        break;
      case op_kind::connect:
        io_uring_prep_connect(sqe, fd, reinterpret_cast<const sockaddr*>(&op.address),
                              op.address_length);
        break;
      case op_kind::poll:
        io_uring_prep_poll_add(sqe, fd, op.flags);
        break;
      case op_kind::timeout: {
        // The kernel reads the timespec when the SQE is submitted; it lives in the op.
        auto* ts = reinterpret_cast<__kernel_timespec*>(&op.address);
        ts->tv_sec = op.timeout_ns / 1'000'000'000;
        ts->tv_nsec = op.timeout_ns % 1'000'000'000;
        io_uring_prep_timeout(sqe, ts, 0, 0);
        break;
      }
      case op_kind::cancel:
      case op_kind::count_:
        io_uring_prep_nop(sqe);
        break;
    }
    io_uring_sqe_set_data(sqe, &op);
  }

  /// Issues `op` again from its completion. False if the memory for it could not be had
  /// (B13): the op then completes with -ENOMEM instead of being lost.
  bool reissue(io_op& op, bool ring_empty = false) noexcept {
    try {
      prepare(op, ring_empty);
      return true;
    } catch (const std::bad_alloc&) {
      return false;
    }
  }

  /// A receive lands in a string of the op's (string_for), in a provided buffer the kernel
  /// picks when data arrives, or in scratch memory (no ring, or the ring ran empty). The
  /// memory comes first: an SQE once taken must be filled, and allocating may throw (B13).
  void prepare_receive(io_op& op, bool ring_empty) {
    std::size_t length = op.length;
    void* target = nullptr;
    bool into_string = false;
    if (buffer_ring_ != nullptr && op.sink != nullptr) {
      // Until data arrives the stream needs no memory of its own (an idle connection holds
      // no receive buffer; an empty buffer's storage goes back to the spares).
      op.sink->idle();
      // (op.received may hold an earlier attempt's string (-EAGAIN, -EINTR): reused.)
      into_string = !op.multishot && string_for(op);
    }
    const bool select_buffer = !into_string && buffer_ring_ != nullptr && !ring_empty;
    if (into_string) {
      target = op.received.data();
      length = op.received.size();
    } else {
      // An earlier attempt's string, if any, is not kept for the stream's life.
      op.into_string = false;
      op.received = std::string();
      if (buffer_ring_ != nullptr) length = std::min(length, buffer_size_);  // as from the ring
      if (!select_buffer) {
        op.pinned = std::make_unique<scratch>(length);
        target = static_cast<scratch&>(*op.pinned).bytes.get();
        if (ring_empty) ++loop_.mutable_stats().ring_empty_fallbacks;
      }
    }
    if (into_string || select_buffer) {
      // An earlier fallback's scratch (its receive ended in -EAGAIN or -EINTR) is not kept
      // for the stream's life; no receive into it is in flight.
      op.pinned.reset();
    }
    io_uring_sqe* sqe = get_sqe();
    if (op.kind == op_kind::recv) {
      io_uring_prep_recv(sqe, op.fd, target, length, static_cast<int>(op.flags));
    } else {
      io_uring_prep_read(sqe, op.fd, target, static_cast<unsigned>(length),
                         static_cast<std::uint64_t>(-1));
    }
    if (select_buffer) {
      sqe->flags |= IOSQE_BUFFER_SELECT;
      sqe->buf_group = buffer_group;
    }
    io_uring_sqe_set_data(sqe, &op);
  }

  /// Makes op.received the string op's receive lands in, if its sink wants one
  /// (recv_sink::string_receive_size); false for a provided buffer.
  bool string_for(io_op& op) noexcept {
    const std::size_t n = op.sink->string_receive_size(op.length);
    if (n == 0) return false;
    try {
      if (op.received.capacity() < n) op.received = spare_strings::local().take_fitting(n);
      resize_for_overwrite(op.received, n);
    } catch (const std::bad_alloc&) {
      return false;  // B13: a provided buffer needs no memory of the stream's
    }
    op.into_string = true;
    ++loop_.mutable_stats().string_receives;
    return true;
  }

  /// After -EAGAIN (an O_NONBLOCK pipe, or a socket the kernel would not poll for us):
  /// wait for readiness with a poll, then issue the operation again.
  void poll_then_retry(io_op& op) {
    op.backend_tag = stage_poll_first;
    io_uring_sqe* sqe = get_sqe();
    bool input = op.kind == op_kind::recv || op.kind == op_kind::read || op.kind == op_kind::accept;
    io_uring_prep_poll_add(sqe, op.fd, input ? POLLIN : POLLOUT);
    io_uring_sqe_set_data(sqe, &op);
    ++loop_.mutable_stats().submissions;
  }

  void reap() {
    // Copy CQEs into pending_ in batches, then deliver them. Why a fixed array and member
    // indices: handlers submit new SQEs (and may reap again, nested, when the SQ is full), and
    // a handler may throw (std::bad_alloc, B13); the completions not yet delivered stay in
    // pending_ for the next reap instead of being lost, and reaping never allocates.
    // C2: completions waiting in the kernel's overflow backlog (the CQ was full); the next
    // enter with GETEVENTS moves them into the CQ. Dropped ones (koverflow) are counted too.
    if (IO_URING_READ_ONCE(*ring_.sq.kflags) & IORING_SQ_CQ_OVERFLOW) {
      ++loop_.mutable_stats().cq_backlog;
    }
    loop_.mutable_stats().cq_overflow = IO_URING_READ_ONCE(*ring_.cq.koverflow);
    serve_queued();
    // What is there now is delivered in this call; what handlers cause waits for the next.
    std::size_t budget =
        (pending_count_ - pending_head_) + stashed_.size() + io_uring_cq_ready(&ring_);
    while (budget > 0) {
      if (pending_head_ == pending_count_ && !stashed_.empty()) {
        // Completions moved aside by a fallback cancel_now came before those in the CQ.
        const std::size_t n = std::min(stashed_.size(), pending_.size());
        std::copy_n(stashed_.begin(), n, pending_.begin());
        stashed_.erase(stashed_.begin(), stashed_.begin() + static_cast<std::ptrdiff_t>(n));
        pending_head_ = 0;
        pending_count_ = n;
      }
      if (pending_head_ == pending_count_) {
        pending_head_ = pending_count_ = 0;
        unsigned head;
        io_uring_cqe* cqe;
        unsigned seen = 0;
        io_uring_for_each_cqe(&ring_, head, cqe) {
          if (seen == pending_.size()) break;
          pending_[seen++] = {cqe->user_data, cqe->res, cqe->flags};
        }
        io_uring_cq_advance(&ring_, seen);
        pending_count_ = seen;
        if (seen == 0) return;
      }
      --budget;
      handle(pending_[pending_head_++]);
    }
  }

  struct completion {
    std::uint64_t user_data;
    int res;
    std::uint32_t flags;
  };

  void handle(const completion& c) {
    if (c.user_data == cancel_tag) return;
    if (c.user_data == wake_tag) {
      arm_wake();
      return;
    }
    io_op& op = *reinterpret_cast<io_op*>(c.user_data);
    if (op.multishot) return on_multishot_completion(op, c);
    int res = c.res;
    // An orphan (its requester is gone) is never issued again: the memory it referred to
    // may be gone too. It completes as cancelled instead of retrying.
    if (op.handler == nullptr && (op.backend_tag == stage_poll_first || res == -EAGAIN ||
                                  res == -ENOBUFS || res == -EINTR)) {
      op.backend_tag = stage_operation;
      res = -ECANCELED;
    } else if (op.backend_tag == stage_poll_first) {
      op.backend_tag = stage_operation;
      if (res >= 0) {
        if (reissue(op)) return;  // readiness arrived: issue the real operation again
        res = -ENOMEM;
      }
    } else if (res == -EAGAIN && op.kind != op_kind::poll && op.kind != op_kind::timeout) {
      poll_then_retry(op);
      return;
    } else if (res == -ENOBUFS && (op.kind == op_kind::recv || op.kind == op_kind::read)) {
      // Rule 4: every provided buffer is taken, possibly held by multishot streams that are
      // not reading (S45) and may not let go for a long time: issuing the receive again
      // could spin. One receive into scratch memory instead, as a multishot's (below).
      if (reissue(op, /*ring_empty=*/true)) return;
      res = -ENOMEM;
    } else if (res == -EINTR) {
      if (reissue(op)) return;
      res = -ENOMEM;
    }
    const bool provided = (c.flags & IORING_CQE_F_BUFFER) != 0;
    const auto id = static_cast<unsigned short>(c.flags >> IORING_CQE_BUFFER_SHIFT);
    try {
      if (op.into_string) {
        op.into_string = false;
        if (res > 0 && op.sink != nullptr) {
          op.sink->take_received(std::move(op.received), static_cast<std::size_t>(res));
          op.received = std::string();  // moved from: make sure it holds nothing
        }
      } else if (provided) {
        if (res > 0) copy_to_sink(op, {buffer_bytes(id), static_cast<std::size_t>(res)});
      } else if ((op.kind == op_kind::recv || op.kind == op_kind::read) && op.pinned) {
        if (res > 0) {
          copy_to_sink(
              op, {static_cast<scratch&>(*op.pinned).bytes.get(), static_cast<std::size_t>(res)});
        }
        // A ring-empty fallback's scratch is not kept while the stream is idle.
        if (buffer_ring_ != nullptr) op.pinned.reset();
      }
    } catch (const std::bad_alloc&) {
      // B13: the sink could not grow; the op still completes (an error, not a lost op).
      res = -ENOMEM;
    }
    if (provided) recycle_buffer(id);
    op.result = res;
    --in_flight_;
    if ((op.multishot_state & ms_first) && res > 0 && op.handler != nullptr) {
      settle_first_receive(op, static_cast<std::size_t>(res));
    }
    deliver_completion(loop_, op);
  }

  struct scratch final : pinned_memory {
    explicit scratch(std::size_t n) : bytes(new std::byte[n]) {}
    std::unique_ptr<std::byte[]> bytes;
  };

  // ------------------------------------------------------------ multishot receive
  // A stream keeps one recv op for the life of its socket and submits it again for each
  // receive it wants. One multishot recv stays armed across those requests (no SQE, no
  // re-poll per message). What arrives while no receive is wanted stays in its provided
  // buffer ("held") and is copied into the stream only when the next receive asks, at most
  // op.length bytes per answer, as a single-shot recv would have read: flow control (S45)
  // and max_buffer_size hold as before, and held buffers stand in for the socket buffer.
  // The multishot is stopped when a stream holds a receive's worth of data it does not
  // want, or as many receives as it has slots for, or when held buffers take a quarter of
  // the ring; if the ring runs empty anyway,
  // a wanted receive falls back to one recv into scratch memory rather than spin on ENOBUFS.

  void request_multishot(io_op& op) {
    if ((op.multishot_state & ms_bulk) && multishot_quiet(op)) {
      // This stream receives large amounts: faster than it reads (the multishot kept filling
      // ring buffers that had to wait for the reader, and was stopped and re-armed every few
      // reads: raw echo of 64 KiB messages, 1.5x the CPU per message of single-shot
      // receives), or in large receives, which land in strings (string_for). Its receives
      // are single-shot from now on; the socket buffer does the flow control.
      op.multishot = false;
      op.multishot_state = 0;
      return submit(op);
    }
    op.multishot_state |= ms_wanted;
    if (op.held_count > 0 || op.multishot_end != no_end) {
      enqueue(op);  // answered from the next reap, never from inside submit
    } else {
      if (op.sink != nullptr) op.sink->idle();  // nothing held: no memory needed until data
      if (!(op.multishot_state & (ms_armed | ms_scratch))) arm_multishot(op);
    }
    sync_in_flight(op);
  }

  /// True if a receive of `n` bytes makes `op`'s stream receive into strings, single-shot,
  /// from now on: a large one, for a sink that takes strings (not TLS ciphertext).
  static bool makes_string_receiver(const io_op& op, std::size_t n) noexcept {
    return n >= large_receive && op.sink != nullptr && op.sink->takes_received_strings();
  }

  /// The first receive of an op that asked for multishot has brought `received` bytes. A
  /// small one arms the multishot now, which then serves the stream's reads (and holds what
  /// arrives between them) as if it had been armed from the start. After a large one the
  /// op stays single-shot, as a stream whose multishot brings a large receive goes
  /// (on_multishot_completion): its receives land in strings.
  // Why not arm at the first read: a multishot armed before any bytes takes a peer's first
  // burst whole into ring buffers, and is then cancelled if the receives are large. In a
  // 64 KiB echo on loopback (tls_load, 4 connections) that start left the client's sockets
  // with half the autotuned receive buffer (0.3-0.45 against 0.8-0.9 MB) and 20x the
  // zero-window advertisements for the rest of the run, and the server spent 1.9x the CPU
  // per message, in its sends delivering to those sockets (docs/performance.md).
  void settle_first_receive(io_op& op, std::size_t received) {
    op.multishot_state = 0;
    if (makes_string_receiver(op, received)) return;  // single-shot from now on
    // The SQE first: taking it may reap (C3), and a completion reaped there may close the
    // stream and orphan this op, which then is not armed.
    io_uring_sqe* sqe = get_sqe();
    if (op.handler == nullptr) {
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data64(sqe, cancel_tag);
      return;
    }
    op.multishot = true;
    op.multishot_state = ms_settled;
    ++loop_.mutable_stats().submissions;
    arm_multishot(op, sqe);
    sync_in_flight(op);
  }

  /// Issues the wanted receive of a bulk stream's op (ms_bulk) as a single-shot receive,
  /// which it is from then on (see request_multishot). Nothing is armed, held or kept.
  void leave_multishot(io_op& op) {
    op.multishot_state &= ~ms_wanted;
    sync_in_flight(op);  // not live: no longer counted as a multishot
    op.multishot = false;
    op.multishot_state = 0;
    op.in_flight = true;
    ++loop_.mutable_stats().ops_by_kind[static_cast<std::size_t>(op.kind)];
    submit(op);
  }

  // Why the callers may change the op's state before this: get_sqe() never fails (a full
  // SQ is flushed and the SQE taken), and it handles no completion where multishot receives
  // exist (Linux 6.0+): only a kernel before 5.19 refuses a flush with -EBUSY while
  // completions wait in its CQ backlog, and only then, with no memory to move them aside,
  // does it reap. The armed bit itself is set once the SQE is filled.
  void arm_multishot(io_op& op, io_uring_sqe* sqe = nullptr) noexcept {
    if (sqe == nullptr) sqe = get_sqe();
    io_uring_prep_recv_multishot(sqe, op.fd, nullptr, 0, static_cast<int>(op.flags));
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = buffer_group;
    io_uring_sqe_set_data(sqe, &op);
    op.multishot_state |= ms_armed;
    ++loop_.mutable_stats().multishot_arms;
  }

  /// Asks the kernel to end the multishot (or the scratch fallback recv) of `op`.
  void stop_multishot(io_op& op) noexcept {
    if (!(op.multishot_state & (ms_armed | ms_scratch)) || (op.multishot_state & ms_stopping)) {
      return;
    }
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_cancel64(sqe, reinterpret_cast<std::uint64_t>(&op), 0);
    io_uring_sqe_set_data64(sqe, cancel_tag);
    op.multishot_state |= ms_stopping;
  }

  /// The ring ran empty while a receive was wanted: one plain recv into scratch memory.
  void receive_into_scratch(io_op& op) {
    std::size_t length = std::min(answer_limit(op), buffer_size_);  // as from the ring
    try {
      op.pinned = std::make_unique<scratch>(length);
    } catch (const std::bad_alloc&) {
      return answer(op, -ENOMEM);
    }
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_recv(sqe, op.fd, static_cast<scratch&>(*op.pinned).bytes.get(), length,
                       static_cast<int>(op.flags));
    io_uring_sqe_set_data(sqe, &op);
    op.multishot_state |= ms_scratch;
    ++loop_.mutable_stats().ring_empty_fallbacks;
    sync_in_flight(op);
  }

  std::size_t answer_limit(const io_op& op) const noexcept {
    return op.length != 0 ? op.length : buffer_size_;
  }

  void on_multishot_completion(io_op& op, const completion& c) {
    bool ring_empty = false;
    if (op.multishot_state & ms_scratch) {
      op.multishot_state &= ~(ms_scratch | ms_stopping);
      int res = c.res;
      if (res > 0) {
        try {
          copy_to_sink(
              op, {static_cast<scratch&>(*op.pinned).bytes.get(), static_cast<std::size_t>(res)});
        } catch (const std::bad_alloc&) {
          res = -ENOMEM;
        }
      }
      op.pinned.reset();
      if (res != -EAGAIN && res != -EINTR && res != -ENOBUFS && res != -ECANCELED &&
          op.handler != nullptr) {
        return answer(op, res);
      }
      return serve(op);
    }
    const bool more = (c.flags & IORING_CQE_F_MORE) != 0;
    int res = c.res;
    if (!more) {
      op.multishot_state &= ~(ms_armed | ms_stopping);  // the multishot has ended
      if (!injected_ends_.empty()) res = injected_end(op, res);
    }
    if (c.flags & IORING_CQE_F_BUFFER) {
      const auto id = static_cast<unsigned short>(c.flags >> IORING_CQE_BUFFER_SHIFT);
      if (c.res > 0 && op.handler != nullptr) {
        hold(op, id, static_cast<std::uint32_t>(c.res));
        if (makes_string_receiver(op, static_cast<std::size_t>(c.res))) {
          // Large receives land in strings of the stream's (string_for), which single-shot
          // receives can do and the multishot cannot: it stops, and the stream's receives
          // are single-shot from then on (request_multishot).
          op.multishot_state |= ms_bulk;
          stop_multishot(op);
        } else if (more && faults_ != nullptr) {
          inject_end(op);
        }
      } else {
        recycle_buffer(id);
      }
    } else if (!more) {
      if (res == -ENOBUFS) {
        ring_empty = true;
      } else if (res != -ECANCELED && res != -EINTR && res != -EAGAIN) {
        op.multishot_end = res;  // EOF or an error, reported after the bytes held before it
      }
    }
    serve(op, ring_empty);
  }

  /// Tests (multishot_faults): ends `op`'s live multishot for real, by a cancel, if the
  /// faults say so; its final completion then reports their errno (injected_end).
  void inject_end(io_op& op) {
    if (op.multishot_state & ms_stopping) return;
    const int error = faults_->end_multishot(op);
    if (error == 0) return;
    try {
      injected_ends_[&op] = error;
    } catch (const std::bad_alloc&) {
      return;  // not injected
    }
    stop_multishot(op);
  }

  /// The final completion of `op`'s multishot: an injected end reports its errno instead of
  /// the cancel's -ECANCELED (an end that came otherwise, EOF or data, stays as it is).
  int injected_end(const io_op& op, int res) noexcept {
    auto it = injected_ends_.find(&op);
    if (it == injected_ends_.end()) return res;
    if (res == -ECANCELED) res = it->second;
    injected_ends_.erase(it);
    return res;
  }

  void hold(io_op& op, std::uint16_t id, std::uint32_t length) {
    if (op.held_count == op.held.size()) {
      // Every slot is taken (completions that were already on their way when we stopped the
      // multishot): the oldest goes into the stream now, which keeps the byte order.
      io_op::held_buffer& oldest = op.held[0];
      try {
        copy_to_sink(op, {buffer_bytes(oldest.id) + oldest.offset, oldest.length - oldest.offset});
      } catch (const std::bad_alloc&) {
        op.multishot_end = -ENOMEM;
      }
      release_held(op, 1);
    }
    op.held[op.held_count++] = {0, length, id};
    if (!(op.multishot_state & ms_wanted)) ++loop_.mutable_stats().buffers_held;
    ++held_buffers_;
  }

  std::byte* buffer_bytes(std::uint16_t id) const noexcept {
    return buffers_.get() + std::size_t(id) * buffer_size_;
  }

  /// Gives the first `n` held buffers back to the ring.
  void release_held(io_op& op, std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) recycle_buffer(op.held[i].id);
    std::copy(op.held.begin() + n, op.held.begin() + op.held_count, op.held.begin());
    op.held_count = static_cast<std::uint8_t>(op.held_count - n);
    held_buffers_ -= n;
  }

  /// Copies held bytes into the sink, at most answer_limit(op); returns the count or -ENOMEM.
  int deliver_held(io_op& op) noexcept {
    std::size_t limit = answer_limit(op);
    if (faults_ != nullptr) limit = faults_->answer_limit(op, limit);
    std::size_t copied = 0;
    // Why: a sink may keep one delivery as the read's result (recv_sink::deliver); an answer
    // made of several held buffers goes in piece by piece, so the pieces are appended.
    const bool one_piece = op.held_count == 1 || op.held[0].length - op.held[0].offset >= limit;
    try {
      while (op.held_count > 0 && copied < limit) {
        io_op::held_buffer& first = op.held[0];
        std::size_t take = std::min<std::size_t>(first.length - first.offset, limit - copied);
        std::span<const std::byte> bytes{buffer_bytes(first.id) + first.offset, take};
        if (one_piece) {
          copy_to_sink(op, bytes);
        } else if (op.sink != nullptr) {
          op.sink->recv_sink::deliver(bytes);
        }
        copied += take;
        first.offset += static_cast<std::uint32_t>(take);
        if (first.offset == first.length) release_held(op, 1);
      }
    } catch (const std::bad_alloc&) {
      return -ENOMEM;
    }
    return static_cast<int>(copied);
  }

  /// Does whatever a multishot op needs now: answer a wanted receive from held bytes or a
  /// kept EOF/error, arm the kernel, or stop it (flow control); an orphan is wound down.
  void serve(io_op& op, bool ring_empty = false) {
    if (op.handler == nullptr) {  // orphaned: nobody will read what it holds
      release_held(op, op.held_count);
      op.multishot_end = no_end;
      stop_multishot(op);
      if (!(op.multishot_state & (ms_armed | ms_scratch | ms_queued))) {
        return answer(op, -ECANCELED);
      }
      return sync_in_flight(op);
    }
    if (op.multishot_state & ms_wanted) {
      if (op.held_count > 0) return answer(op, deliver_held(op));
      if (op.multishot_end != no_end) return answer(op, std::exchange(op.multishot_end, no_end));
      if (!(op.multishot_state & (ms_armed | ms_scratch))) {
        ++loop_.mutable_stats().submissions;
        if (ring_empty) return receive_into_scratch(op);
        if ((op.multishot_state & ms_bulk) && !(op.multishot_state & ms_queued)) {
          return leave_multishot(op);  // it was stopped for this, while a receive was wanted
        }
        arm_multishot(op);
      }
    } else if (op.held_count > 0) {
      std::size_t held_bytes = 0;
      for (std::size_t i = 0; i < op.held_count; ++i) {
        held_bytes += op.held[i].length - op.held[i].offset;
      }
      if (held_bytes >= answer_limit(op)) {
        op.multishot_state |= ms_bulk;
        stop_multishot(op);
      } else if (op.held_count == op.held.size() || held_buffers_ * 4 >= buffer_count_) {
        // Every slot is taken: one more arrival would push the oldest into the stream (hold),
        // and small messages would then be read ahead without limit (S45).
        stop_multishot(op);
      }
    }
    sync_in_flight(op);
  }

  void answer(io_op& op, int result) {
    op.multishot_state &= ~ms_wanted;
    op.result = result;
    sync_in_flight(op);
    deliver_completion(loop_, op);  // may release an orphan: op is not touched after this
  }

  /// True when neither the kernel nor this backend has anything for `op`: no multishot or
  /// fallback recv live, nothing held, queued or kept to report.
  static bool multishot_quiet(const io_op& op) noexcept {
    constexpr std::uint16_t busy = ms_armed | ms_scratch | ms_queued | ms_stopping | ms_counted;
    return !(op.multishot_state & busy) && op.held_count == 0 && op.multishot_end == no_end;
  }

  /// A multishot op is in flight while the kernel or this backend has anything for it.
  void sync_in_flight(io_op& op) noexcept {
    const bool live = (op.multishot_state & (ms_armed | ms_queued | ms_scratch)) ||
                      op.held_count > 0 || op.multishot_end != no_end;
    op.in_flight = live;
    if (live && !(op.multishot_state & ms_counted)) {
      op.multishot_state |= ms_counted;
      ++in_flight_;
    } else if (!live && (op.multishot_state & ms_counted)) {
      op.multishot_state &= ~ms_counted;
      --in_flight_;
    }
  }

  void enqueue(io_op& op) noexcept {
    if (op.multishot_state & ms_queued) return;
    op.multishot_state |= ms_queued;
    op.next_waiter = nullptr;
    if (serve_tail_ != nullptr) {
      serve_tail_->next_waiter = &op;
    } else {
      serve_head_ = &op;
    }
    serve_tail_ = &op;
  }

  /// Serves the ops queued before this call; what they queue waits for the next reap.
  void serve_queued() {
    io_op* list = std::exchange(serve_head_, nullptr);
    serve_tail_ = nullptr;
    while (list != nullptr) {
      io_op& op = *list;
      list = std::exchange(op.next_waiter, nullptr);
      op.multishot_state &= ~ms_queued;
      try {
        serve(op);
      } catch (...) {
        // B13: a handler threw; the ops not yet served go back to the front of the list.
        if (list != nullptr) {
          io_op* last = list;
          while (last->next_waiter != nullptr) last = last->next_waiter;
          last->next_waiter = serve_head_;
          if (serve_head_ == nullptr) serve_tail_ = last;
          serve_head_ = list;
        }
        throw;
      }
    }
  }

  event_loop& loop_;
  io_uring ring_{};
  int wake_fd_ = -1;
  std::uint64_t wake_value_ = 0;
  io_uring_buf_ring* buffer_ring_ = nullptr;
  std::size_t buffer_ring_bytes_ = 0;
  unsigned buffer_count_ = 0;
  std::size_t buffer_size_ = 0;
  std::unique_ptr<std::byte[]> buffers_;
  std::vector<completion> pending_;  // up to 256 CQEs, sized at setup: reap() never allocates
  // CQEs moved out of a full CQ while cancel_now waited without handling any (reserved at
  // setup), delivered by reap() before the CQ's.
  std::vector<completion> stashed_;
  // IORING_REGISTER_SYNC_CANCEL (Linux 6.0+); off after the kernel refused it once, or with
  // CORIO_NO_SYNC_CANCEL=1 (tests run the older kernels' path with it).
  bool sync_cancel_ = true;
  bool single_issuer_ = false;  // the ring refuses every thread but owner_
  std::thread::id owner_;
  std::size_t pending_head_ = 0;
  std::size_t pending_count_ = 0;
  std::size_t in_flight_ = 0;
  bool multishot_ = false;
  std::size_t held_buffers_ = 0;  // provided buffers held for multishot ops, all streams
  io_op* serve_head_ = nullptr;   // multishot ops to serve at the next reap (next_waiter)
  io_op* serve_tail_ = nullptr;
  multishot_faults* faults_ = nullptr;                   // tests only (fault_backend.hpp)
  std::unordered_map<const io_op*, int> injected_ends_;  // tests: multishot ends asked for, errno
};

}  // namespace

std::unique_ptr<backend_base> make_uring_backend(event_loop& loop, const loop_options& options) {
  return std::make_unique<uring_backend>(loop, options);
}

}  // namespace corio::detail
