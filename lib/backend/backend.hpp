// lib/backend/backend.hpp - what every backend provides to the event loop.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>

#include "corio/detail/io_op.hpp"
#include "corio/loop.hpp"

namespace corio::detail {

/// Delivers a completed op: to its handler, or (orphaned) back to the loop's pool.
void deliver_completion(event_loop& loop, io_op& op);

/// Copies received bytes into the op's sink (a backend that received them elsewhere: a
/// provided or scratch buffer); an orphaned op (no sink) drops them. Throws std::bad_alloc
/// if the sink cannot grow.
inline void copy_to_sink(io_op& op, std::span<const std::byte> bytes) {
  if (op.sink == nullptr) return;  // orphaned: nobody wants these bytes
  if (!bytes.empty()) op.sink->deliver(bytes);
}

/// Test hook (fault_backend.hpp): faults for the multishot receives an io_uring backend keeps
/// armed across a stream's receives, which a wrapper that sees one completion per submission
/// cannot fault from outside.
class multishot_faults {
 public:
  /// A receive of `op` is answered from held bytes, at most `limit` of them: the number to
  /// answer with instead (1..limit; less is a short receive).
  virtual std::size_t answer_limit(const io_op& op, std::size_t limit) noexcept = 0;
  /// A data completion of `op`'s live multishot arrived: 0, or the -errno with which the
  /// kernel is to end this multishot (the backend cancels it for real and reports that errno
  /// as the end instead of the cancel's -ECANCELED).
  virtual int end_multishot(const io_op& op) noexcept = 0;

 protected:
  ~multishot_faults() = default;
};

/// A backend completes io_ops; it knows nothing about streams.
class backend_base {
 public:
  virtual ~backend_base() = default;
  virtual corio::backend kind() const noexcept = 0;
  /// Starts `op`. Its completion is delivered from a later wait(), never from inside submit.
  virtual void submit(io_op& op) = 0;
  /// Asks for `op` to finish early; it completes later (with -ECANCELED or its real result).
  virtual void cancel(io_op& op) noexcept = 0;
  /// Returns once the kernel no longer touches memory `op` refers to; the completion is
  /// still delivered later.
  virtual void cancel_now(io_op& op) noexcept = 0;
  /// `fd` is about to be closed: forget any registration of it.
  virtual void forget_fd(int fd) noexcept = 0;
  /// Flushes submissions and waits for completions at most `timeout` (nullopt: no limit,
  /// zero: do not block), then delivers them. One system call where possible.
  virtual void wait(std::optional<std::chrono::nanoseconds> timeout) = 0;
  /// True if completions are already known without asking the kernel.
  virtual bool has_ready_completions() const noexcept = 0;
  /// Wakes a wait() in progress. Thread-safe.
  virtual void wake() noexcept = 0;
  /// Ops still in flight (including orphans).
  virtual std::size_t in_flight() const noexcept = 0;
  /// True if a recv op marked `multishot` is kept armed between requests (io_op::multishot).
  virtual bool supports_multishot_recv() const noexcept { return false; }
  /// Hands queued submissions to the kernel without waiting (io_uring: the SQEs of the last
  /// turn; epoll has nothing queued).
  virtual void submit_queued() noexcept {}
  /// False if the calling thread cannot use this backend: an io_uring ring set up with
  /// SINGLE_ISSUER refuses every other thread (-EEXIST).
  virtual bool usable_on_this_thread() const noexcept { return true; }
  /// For a backend this thread cannot use, instead of destruction: closes its fds without
  /// cancelling or waiting, and leaves every byte of memory the kernel may still write
  /// allocated (the object itself is leaked by the caller).
  virtual void abandon() noexcept {}
  /// Installs (nullptr: removes) the faults of its multishot receives (tests only).
  virtual void set_multishot_faults(multishot_faults* /*faults*/) noexcept {}
};

/// Creates the io_uring backend; throws backend_unavailable_error with the reason.
std::unique_ptr<backend_base> make_uring_backend(event_loop& loop, const loop_options& options);
/// Creates the epoll backend.
std::unique_ptr<backend_base> make_epoll_backend(event_loop& loop, const loop_options& options);
/// Test hook: returns `inner` wrapped in a fault-injecting backend when a test installed a
/// fault plan on this thread (fault_backend.hpp), otherwise `inner` itself.
std::unique_ptr<backend_base> maybe_wrap_backend(event_loop& loop,
                                                 std::unique_ptr<backend_base> inner);

}  // namespace corio::detail
