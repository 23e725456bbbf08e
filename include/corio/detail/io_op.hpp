// corio/detail/io_op.hpp - one operation handed to a backend (and, on io_uring, to the kernel).
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace corio::detail {

/// The kinds of backend operation; loop_stats counts them.
enum class op_kind : std::uint8_t {
  recv,
  send,
  sendmsg,
  read,
  write,
  accept,
  connect,
  poll,
  timeout,
  cancel,
  count_
};
inline constexpr std::size_t op_kind_count = static_cast<std::size_t>(op_kind::count_);
const char* op_kind_name(op_kind kind) noexcept;

struct io_op;

/// Receives the completion of an io_op. Called from the event loop, never from inside submit.
class io_handler {
 public:
  virtual void on_io_complete(io_op& op) = 0;

 protected:
  ~io_handler() = default;
};

/// Where received bytes go. Why: on io_uring the kernel writes into the loop's provided
/// buffer ring, never into memory a cancelled coroutine could free; the bytes are then
/// copied to the sink at completion. On epoll the syscall writes into prepare() directly.
class recv_sink {
 public:
  /// Space for up to `max` bytes (may return less, never empty when max > 0).
  virtual std::span<std::byte> prepare(std::size_t max) = 0;
  /// `n` bytes of the prepared space now hold data.
  virtual void commit(std::size_t n) noexcept = 0;
  /// Takes a copy of bytes the backend received elsewhere (a provided or scratch buffer).
  /// The default copies through prepare() and commit(); a sink may keep them its own way.
  virtual void deliver(std::span<const std::byte> bytes) {
    while (!bytes.empty()) {
      std::span<std::byte> space = prepare(bytes.size());
      if (space.empty()) return;  // a sink with no room left: drop the rest, never spin
      const std::size_t take = space.size() < bytes.size() ? space.size() : bytes.size();
      std::memcpy(space.data(), bytes.data(), take);
      commit(take);
      bytes = bytes.subspan(take);
    }
  }
  /// io_uring: the size of a string a receive of up to `max` bytes should land in, to be
  /// handed over by take_received() instead of copied out of a provided buffer; 0 for a
  /// provided buffer.
  virtual std::size_t string_receive_size(std::size_t /*max*/) const noexcept { return 0; }
  /// io_uring: true if string_receive_size() may be non-zero (after large receives).
  virtual bool takes_received_strings() const noexcept { return false; }
  /// Takes `bytes`, whose first `n` (> 0) chars were received; the others are unspecified.
  virtual void take_received(std::string&& bytes, std::size_t n) {
    deliver({reinterpret_cast<const std::byte*>(bytes.data()), n});
  }
  /// Nothing can arrive until the transport is ready again: memory kept only for the next
  /// receive may go back to a pool, so that an idle connection holds no receive buffer.
  virtual void idle() noexcept {}
  /// True if prepare(n) would not allocate. Why: on epoll a receive into a sink without room
  /// goes into the loop's scratch block and only the bytes received are copied, so a turn in
  /// which many idle streams wake does not allocate (and free) a full receive chunk for each.
  virtual bool has_room(std::size_t /*n*/) const noexcept { return true; }

 protected:
  ~recv_sink() = default;
};

/// Memory the kernel may still read after its owner went away (a stream's write queue).
/// An orphaned op owns it until the completion arrives (io_uring rule 1).
struct pinned_memory {
  virtual ~pinned_memory() = default;
};

/// A receive at least this large (a stream's first, or one of its multishot receive) makes an
/// io_uring stream that takes received strings use single-shot receives into strings from
/// then on (stream_core::string_receive_size).
inline constexpr std::size_t large_receive = 4096;

/// Shared by the orphaned ops of a transport that was closed while they were in flight:
/// the fd is closed when the last of them completes (io_uring rule 3).
struct deferred_close {
  int fd = -1;
  int remaining = 0;
};

/// One backend operation. Owned by the event loop's pool; the requester holds a pointer
/// while it cares about the result. If the requester goes away while the op is in flight it
/// orphans the op (handler = nullptr, sink = nullptr) and asks for a cancel; the loop then
/// frees the op, and whatever it pins, when the completion arrives.
struct io_op {
  op_kind kind = op_kind::recv;
  bool in_flight = false;
  int fd = -1;
  int result = 0;                ///< bytes, a new fd, or -errno
  std::uint32_t flags = 0;       ///< MSG_* flags, or poll events for poll
  std::size_t length = 0;        ///< recv/read: at most this many bytes
  const void* source = nullptr;  ///< send/write: bytes to send (length bytes)
  recv_sink* sink = nullptr;     ///< recv/read: destination
  std::vector<iovec> iov;        ///< sendmsg: the pieces (kept for reuse)
  msghdr message{};
  sockaddr_storage address{};  ///< connect: peer; accept: filled with the peer
  socklen_t address_length = 0;
  long long timeout_ns = 0;  ///< timeout op: relative duration
  io_handler* handler = nullptr;
  std::unique_ptr<pinned_memory> pinned;
  /// io_uring recv with into_string: owned by the op until the completion arrives, even if
  /// the stream is gone by then (io_uring rule 1); then handed to the sink.
  std::string received;
  deferred_close* close_after = nullptr;
  /// recv: the requester keeps this op for the life of its transport and submits it again
  /// for each receive it wants. A backend that can (io_uring) keeps one multishot receive
  /// armed across those requests, from the completion of a small first receive on, and holds
  /// what arrives between them; the op then stays in_flight while the backend has anything
  /// for it, and is released only when orphaned. (The backend may turn this off: during the
  /// first receive, and for good after a large one.)
  bool multishot = false;
  /// io_uring recv: the kernel writes into `received` (recv_sink::string_receive_size).
  bool into_string = false;
  // Backend-private fields.
  io_op* next_waiter = nullptr;  ///< epoll: ops waiting on one fd; io_uring: ops to serve
  std::uint64_t backend_tag = 0;
  /// io_uring multishot receive: provided buffers that arrived while no receive was wanted,
  /// in order (offset: bytes of the first one already delivered).
  struct held_buffer {
    std::uint32_t offset;
    std::uint32_t length;
    std::uint16_t id;
  };
  std::array<held_buffer, 4> held{};
  std::uint8_t held_count = 0;
  std::uint16_t multishot_state = 0;  ///< io_uring: armed / wanted / stopping / queued bits
  int multishot_end = 1;              ///< io_uring: EOF (0) or -errno kept behind held bytes

  /// Prepares the op for reuse from the pool.
  void reset() noexcept {
    kind = op_kind::recv;
    in_flight = false;
    fd = -1;
    result = 0;
    flags = 0;
    length = 0;
    source = nullptr;
    sink = nullptr;
    iov.clear();
    message = {};
    address_length = 0;
    timeout_ns = 0;
    handler = nullptr;
    pinned.reset();
    close_after = nullptr;
    multishot = false;
    into_string = false;
    received = std::string();  // a receive that brought nothing left it here
    next_waiter = nullptr;
    backend_tag = 0;
    held_count = 0;
    multishot_state = 0;
    multishot_end = 1;
  }
};

}  // namespace corio::detail
