// The stream engine: Tornado IOStream semantics (stream-semantics.md) over an fd transport.
#include "corio/stream.hpp"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <new>
#include <stdexcept>

#include "backend/backend.hpp"
#include "corio/io.hpp"
#include "spare_strings.hpp"
#include "stream_core.hpp"

namespace corio {
namespace detail {
namespace {

// Why: Linux never transfers more than 0x7ffff000 bytes in one read/write/sendmsg call; a
// larger request is split by us instead of being truncated silently (scenario A7).
constexpr std::size_t max_bytes_per_send = 0x7ffff000;
constexpr std::size_t max_pieces_per_send = IOV_MAX;
constexpr std::size_t merge_small_write_limit = spare_strings::wide_capacity;

std::string printable(std::string_view bytes) {
  std::string out;
  for (unsigned char c : bytes) {
    switch (c) {
      case '\r':
        out += "\\r";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          char hex[5];
          std::snprintf(hex, sizeof hex, "\\x%02x", c);
          out += hex;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

stream_options effective(stream_options o) {
  if (o.max_buffer_size == 0) o.max_buffer_size = 100 << 20;  // S1
  if (o.read_chunk_size == 0) o.read_chunk_size = 64 << 10;   // S2
  o.read_chunk_size = std::min(o.read_chunk_size, std::max<std::size_t>(o.max_buffer_size / 2, 1));
  return o;
}

/// The unsent write queue, kept alive for an orphaned sendmsg (io_uring rule 1).
struct pinned_pieces final : pinned_memory {
  piece_queue pieces;
};

/// Where a non-empty `delimiter` first occurs in [from, end), or nullptr. Why not memmem for
/// short ones: glibc's memmem pays a setup per call that was 11 % of server CPU on pipelined
/// 64-byte lines; memchr for the first byte and a compare is a few cycles. The worst case
/// (the first byte everywhere) costs n * size, so long delimiters use memmem.
const char* find_delimiter(const char* from, const char* end, std::string_view delimiter) {
  const std::size_t size = delimiter.size();
  if (static_cast<std::size_t>(end - from) < size) return nullptr;
  if (size > 8) {
    return static_cast<const char*>(
        ::memmem(from, static_cast<std::size_t>(end - from), delimiter.data(), size));
  }
  const char* last_start = end - size;  // the last place a match can begin
  while (from <= last_start) {
    auto* hit = static_cast<const char*>(
        std::memchr(from, delimiter[0], static_cast<std::size_t>(last_start - from) + 1));
    if (hit == nullptr) return nullptr;
    std::size_t i = 1;  // at most 7 bytes: a loop, not a call to memcmp
    while (i < size && hit[i] == delimiter[i]) ++i;
    if (i == size) return hit;
    from = hit + 1;
  }
  return nullptr;
}

/// Runs close callbacks in order (S38); one that throws is reported and the others still run.
void run_close_callbacks(event_loop& loop, std::vector<std::function<void()>>& callbacks) {
  for (auto& callback : callbacks) {
    try {
      callback();
    } catch (...) {
      loop.report_exception(std::current_exception());
    }
  }
}

/// The close callbacks of a stream destroyed before they ran: they still run once, from the
/// loop (S38), and the node deletes itself (or is discarded with the loop).
class orphaned_close_notice final : public ready_node {
 public:
  orphaned_close_notice(event_loop& loop, std::vector<std::function<void()>>&& callbacks) noexcept
      : loop_(loop), callbacks_(std::move(callbacks)) {}
  void run_ready() override {
    std::unique_ptr<orphaned_close_notice> self(this);
    run_close_callbacks(loop_, callbacks_);
  }
  void discard() noexcept override { delete this; }

 private:
  event_loop& loop_;
  std::vector<std::function<void()>> callbacks_;
};

}  // namespace

stream_core::stream_core(event_loop& loop, int fd, stream::transport_kind kind,
                         stream_options options)
    : loop_(loop), fd_(fd), kind_(kind), options_(effective(options)) {
  close_notice_.core = this;
  cipher_sink_.core = this;
  held_plaintext_.core = this;
  if (kind == stream::transport_kind::pipe) {
    const int flags = ::fcntl(fd, F_GETFL);
    write_only_ = flags >= 0 && (flags & O_ACCMODE) == O_WRONLY;
  }
}

stream_core::~stream_core() {
  close_callback_ = nullptr;  // destruction is not a close: a callback not yet taken never runs
  // As close() (S36): queued writes get their one non-blocking send, so `write(x)` and then
  // letting the stream go delivers a small x, as it does with an explicit close().
  close_by_user({});
  // S38: callbacks taken by an earlier close run exactly once, from the loop, even when the
  // stream is destroyed before they ran (a read's catch block that ends the coroutine).
  if (close_notice_.queued() && !close_notice_.callbacks.empty()) {
    if (auto* orphan =
            new (std::nothrow) orphaned_close_notice(loop_, std::move(close_notice_.callbacks))) {
      loop_.schedule(*orphan);
    }
  }
  loop_.remove_turn_hook(*this);
}

// ---------------------------------------------------------------- reads

void stream_core::begin_read(read_kind kind, const char* name) {
  if (write_only_) {
    throw std::logic_error(std::string(name) + ": the stream is the write end of a pipe");
  }
  if (read_.kind != read_kind::none) {
    throw std::logic_error(std::string(name) + ": already reading (another read is pending on " +
                           "this stream; only one read at a time, S8)");
  }
  // Field by field rather than read_ = {}: the delimiter string keeps its memory (read_until
  // assigns it; no other read looks at it).
  read_.kind = kind;
  read_.max_bytes = 0;
  read_.count = 0;
  read_.partial = false;
  read_.into = {};
  read_.scan_from = 0;
  read_.name = name;
  read_.string_op = nullptr;
  read_.count_op = nullptr;
}

void stream_core::abandon_read() noexcept {
  pending_op_base* op = read_.string_op;
  if (op == nullptr) op = read_.count_op;
  clear_read();
  if (op != nullptr) {
    op->detach_owner();
    op->abandon_by_task();  // the task's reference: nobody holds it, the op is freed
  }
}

void stream_core::clear_read() noexcept {
  read_.kind = read_kind::none;
  read_.string_op = nullptr;
  read_.count_op = nullptr;
  read_.into = {};
}

stream_core::verdict stream_core::evaluate(std::size_t& consume) {
  const std::size_t size = buffer_.size();
  switch (read_.kind) {
    case read_kind::none:
    case read_kind::until_close:
      return verdict::wait;
    case read_kind::bytes:
    case read_kind::into:
      if (read_.partial ? size > 0 : size >= read_.count) {
        consume = std::min(read_.count, size);
        return verdict::ready;
      }
      return verdict::wait;
    case read_kind::until: {
      if (size == 0) return verdict::wait;
      const std::string& delim = read_.delimiter;
      std::string_view data = buffer_.view();
      std::size_t found = std::string_view::npos;
      if (delim.empty()) {
        found = 0;
      } else if (const char* hit =
                     find_delimiter(data.data() + read_.scan_from, data.data() + size, delim)) {
        found = static_cast<std::size_t>(hit - data.data());
      }
      if (found != std::string_view::npos) {
        std::size_t end = found + delim.size();
        if (read_.max_bytes != 0 && end > read_.max_bytes) return verdict::unsatisfiable;
        consume = end;
        return verdict::ready;
      }
      if (read_.max_bytes != 0 && size > read_.max_bytes) return verdict::unsatisfiable;
      // Resume the next search where this one could still find a straddling delimiter:
      // O(n) in total however the bytes are chunked (§17.5.2).
      read_.scan_from = size >= delim.size() ? size - (delim.size() - 1) : 0;
      return verdict::wait;
    }
    case read_kind::regex: {
      if (size == 0) return verdict::wait;
      if (auto end = regex_->match_end(buffer_.view())) {
        if (read_.max_bytes != 0 && *end > read_.max_bytes) return verdict::unsatisfiable;
        consume = *end;
        return verdict::ready;
      }
      if (read_.max_bytes != 0 && size > read_.max_bytes) return verdict::unsatisfiable;
      return verdict::wait;
    }
  }
  return verdict::wait;
}

bool stream_core::read_takes_all(std::string_view bytes) const noexcept {
  switch (read_.kind) {
    case read_kind::bytes:
      return read_.partial ? read_.count >= bytes.size() : read_.count == bytes.size();
    case read_kind::until: {
      const std::string& delim = read_.delimiter;
      if (delim.empty() || (read_.max_bytes != 0 && bytes.size() > read_.max_bytes)) return false;
      const char* end = bytes.data() + bytes.size();
      const char* hit = find_delimiter(bytes.data(), end, delim);
      return hit != nullptr && hit + delim.size() == end;
    }
    default:  // read_into copies into the caller's span; the others wait for more
      return false;
  }
}

void stream_core::deliver(std::span<const std::byte> bytes) {
  // Why: a receive that landed in a provided or scratch buffer is copied once here; if the
  // pending read takes all of it, copying into a string of its own lets the read hand that
  // string over instead of copying a second time (one user-space copy per message, not two).
  if (buffer_.empty() &&
      read_takes_all({reinterpret_cast<const char*>(bytes.data()), bytes.size()})) {
    buffer_.adopt(bytes);
  } else {
    recv_sink::deliver(bytes);
  }
  last_receive_ = bytes.size();
}

// Why: after large receives, copying out of the io_uring provided buffer was the largest
// user-space cost (raw echo of 4 KiB messages: a fifth of the server's CPU, as the ring's
// 8 MiB are never warm). A read_bytes or read_until waiting on an empty buffer can instead
// have the kernel write into a string that becomes the buffer's storage, and the read's
// result when it takes all of it. Sized at the power of two above the last receive, so that
// a receive like the last fills at least half of it (see read_buffer::take). Small receives,
// and small reads (a length prefix: one receive may bring it and the body), keep the
// provided buffers, which need no memory per stream.
std::size_t stream_core::string_receive_size(std::size_t max) const noexcept {
  if (!buffer_.empty() || last_receive_ < large_receive) return 0;
  std::size_t n = std::min(max, std::bit_ceil(last_receive_ + 1));
  if (read_.kind == read_kind::bytes) {
    n = std::min(n, read_.count);
  } else if (read_.kind != read_kind::until) {
    return 0;
  }
  return n >= large_receive ? n : 0;
}

void stream_core::take_received(std::string&& bytes, std::size_t n) {
  if (buffer_.empty()) {
    buffer_.adopt_string(std::move(bytes), n);
  } else {
    recv_sink::deliver({reinterpret_cast<const std::byte*>(bytes.data()), n});
    spare_strings::local().give(bytes);
  }
  last_receive_ = n;
}

std::string stream_core::unsatisfiable_message() const {
  if (read_.kind == read_kind::regex) {
    return std::string(read_.name) + ": pattern \"" + printable(regex_->pattern()) +
           "\" not matched within max_bytes=" + std::to_string(read_.max_bytes);
  }
  return std::string(read_.name) + ": delimiter \"" + printable(read_.delimiter) +
         "\" not found within max_bytes=" + std::to_string(read_.max_bytes);
}

std::exception_ptr stream_core::closed_error(const char* what) const noexcept {
  try {
    std::string message = std::string(what) + ": stream is closed";
    if (error_) message += " (" + error_.message() + ")";
    return std::make_exception_ptr(stream_closed_error(message, error_));
  } catch (...) {
    return std::current_exception();  // B13: no memory for the message: std::bad_alloc
  }
}

template <class T>
task<T> stream_core::finish_at_call(verdict v, std::size_t consume) {
  if (v == verdict::ready) {
    if constexpr (std::is_same_v<T, std::size_t>) {
      std::memcpy(read_.into.data(), buffer_.data(), consume);
      buffer_.consume(consume);
      clear_read();
      maybe_watch_idle();
      return make_ready_task<std::size_t>(consume);
    } else {
      std::string out = buffer_.take(consume);
      clear_read();
      maybe_watch_idle();
      return make_ready_task<std::string>(std::move(out));
    }
  }
  if (v == verdict::unsatisfiable) {
    const bool was_closed = closed_;
    const char* name = read_.name;
    std::string message = unsatisfiable_message();
    clear_read();
    close(make_error_code(errc::unsatisfiable_read));  // S16: the stream closes
    // S10: on a stream that was already closed, error() stays what it was and the read
    // fails with stream_closed_error{error()} (Tornado: StreamClosedError(real_error)).
    if (was_closed) return make_failed_task<T>(closed_error(name));
    return make_failed_task<T>(std::make_exception_ptr(
        stream_closed_error(message, make_error_code(errc::unsatisfiable_read))));
  }
  if (closed_) {  // S10: nothing more will arrive; the slot is released (D1)
    const char* name = read_.name;
    clear_read();
    return make_failed_task<T>(closed_error(name));
  }
  auto* op = new pending_op<T>();
  op->attach_owner(this);
  if constexpr (std::is_same_v<T, std::size_t>) {
    read_.count_op = op;
  } else {
    read_.string_op = op;
  }
  want_transport_read();
  return task<T>::from_op(op);
}

task<std::string> stream_core::read_until(std::string_view delimiter, std::size_t max_bytes) {
  begin_read(read_kind::until, "read_until");
  read_.delimiter.assign(delimiter);
  read_.max_bytes = max_bytes;
  std::size_t consume = 0;
  verdict v = evaluate(consume);
  return finish_at_call<std::string>(v, consume);
}

task<std::string> stream_core::read_until_regex(std::string_view pattern, std::size_t max_bytes) {
  // D8: compile (or reuse) the pattern before the read is registered, so that a bad pattern
  // changes nothing; S8 is checked first so that a second read fails the same way as always.
  if (read_.kind != read_kind::none) begin_read(read_kind::regex, "read_until_regex");  // throws
  if (!regex_ || regex_->pattern() != pattern) regex_ = std::make_unique<regex_matcher>(pattern);
  begin_read(read_kind::regex, "read_until_regex");
  read_.max_bytes = max_bytes;
  std::size_t consume = 0;
  verdict v = evaluate(consume);
  return finish_at_call<std::string>(v, consume);
}

task<std::string> stream_core::read_bytes(std::size_t n, bool partial) {
  begin_read(read_kind::bytes, "read_bytes");
  if (n == 0) {  // S23: at once, even on a closed stream
    clear_read();
    return make_ready_task<std::string>(std::string());
  }
  read_.count = n;
  read_.partial = partial;
  std::size_t consume = 0;
  verdict v = evaluate(consume);
  return finish_at_call<std::string>(v, consume);
}

task<std::size_t> stream_core::read_into(std::span<std::byte> into, bool partial) {
  begin_read(read_kind::into, "read_into");
  if (into.empty()) {  // S25
    clear_read();
    return make_ready_task<std::size_t>(std::size_t{0});
  }
  read_.count = into.size();
  read_.partial = partial;
  read_.into = into;
  std::size_t consume = 0;
  verdict v = evaluate(consume);
  return finish_at_call<std::size_t>(v, consume);
}

task<std::string> stream_core::read_until_close() {
  begin_read(read_kind::until_close, "read_until_close");
  if (closed_) {  // S27
    clear_read();
    return make_ready_task<std::string>(buffer_.take(buffer_.size()));
  }
  auto* op = new pending_op<std::string>();
  op->attach_owner(this);
  read_.string_op = op;
  want_transport_read();
  return task<std::string>::from_op(op);
}

void stream_core::complete_read(std::size_t consume) {
  if (read_.kind == read_kind::into) {
    std::memcpy(read_.into.data(), buffer_.data(), consume);
    buffer_.consume(consume);
    pending_op<std::size_t>* op = read_.count_op;
    clear_read();
    op->complete(consume);
    op->detach_owner();
  } else {
    std::string out = buffer_.take(consume);
    pending_op<std::string>* op = read_.string_op;
    clear_read();
    op->complete(std::move(out));
    op->detach_owner();
  }
}

void stream_core::fail_read(std::exception_ptr error) noexcept {
  pending_op_base* op = read_.string_op;
  if (op == nullptr) op = read_.count_op;
  clear_read();
  if (op != nullptr) {
    op->fail(std::move(error));
    op->detach_owner();
  }
}

void stream_core::try_read_progress() {
  if (read_.kind == read_kind::none) {
    // Data stays buffered (S40, S45). Over TLS, ciphertext may decrypt to nothing (session
    // tickets, KeyUpdate): the buffer is still empty, so an idle watch must go on.
    maybe_watch_idle();
    return;
  }
  std::size_t consume = 0;
  verdict v = verdict::wait;
  try {
    v = evaluate(consume);
  } catch (const regex_error&) {
    // The pattern could not be matched at all (PCRE2's match or depth limit): the read
    // fails, every byte stays buffered and the stream stays usable, as for a bad pattern (D8).
    fail_read(std::current_exception());
    return;
  }
  switch (v) {
    case verdict::ready:
      complete_read(consume);
      maybe_watch_idle();
      break;
    case verdict::unsatisfiable:
      close(make_error_code(errc::unsatisfiable_read));
      break;
    case verdict::wait:
      want_transport_read();
      break;
  }
}

void stream_core::want_transport_read() {
  if (closed_ || read_requested_) return;
  if (tls_ && tls_->plaintext_held()) {
    // Plaintext is still inside OpenSSL (pump_tls decrypts read_chunk_size bytes at a time):
    // it comes before anything received later, so it is taken first, from the loop as a
    // receive's completion would be (no recursion through try_read_progress).
    read_requested_ = true;
    if (!held_plaintext_.queued()) loop_.schedule(held_plaintext_);
    return;
  }
  std::size_t length = options_.read_chunk_size;
  if (read_.kind == read_kind::into && !tls_) {
    // S24: never ask for more than the span still has room for. Not for ciphertext: it is
    // decrypted into the buffer whole records at a time, so a small span would only make
    // the transport read a record a few bytes per receive.
    std::size_t room = read_.into.size() > buffer_.size() ? read_.into.size() - buffer_.size() : 1;
    length = std::min(length, room);
  }
  if (read_op_ == nullptr) {
    io_op& op = *loop_.acquire_op();
    op.kind = kind_ == stream::transport_kind::socket ? op_kind::recv : op_kind::read;
    op.fd = fd_;
    op.handler = this;
    // Why: on io_uring one multishot receive then serves every read of the socket; the op
    // stays with the stream until it closes (io_op::multishot).
    op.multishot = op.kind == op_kind::recv && loop_.backend_impl().supports_multishot_recv();
    read_op_ = &op;
  }
  io_op& op = *read_op_;
  op.length = length;
  op.sink = tls_ ? static_cast<recv_sink*>(&cipher_sink_) : this;
  read_requested_ = true;
  try {
    loop_.submit(op);
  } catch (...) {  // B13: not submitted (std::bad_alloc): no read requested
    read_requested_ = false;
    if (!op.in_flight) {
      read_op_ = nullptr;
      loop_.release_op(&op);
    }
    throw;
  }
}

void stream_core::maybe_watch_idle() {
  // S40: with a close callback set, an idle stream with an empty buffer still notices EOF.
  // Not on the write end of a pipe, where a read fails at once (EBADF) and would close it:
  // there the callback runs when a write finds the reader gone (EPIPE) or on close().
  if (close_callback_ && !write_only_ && read_.kind == read_kind::none && buffer_.empty()) {
    want_transport_read();
  }
}

void stream_core::on_read_done(int result) {
  if (result > 0) {
    bytes_arrived();
  } else if (result == 0) {
    if (tls_) return on_tls_eof();
    close({});  // S35: EOF closes both directions
  } else if (result != -ECANCELED) {
    close(std::error_code(-result, std::generic_category()));
  }
}

void stream_core::bytes_arrived() {
  if (tls_ && !pump_tls()) return;
  if (buffer_.size() > options_.max_buffer_size) {  // S42, D4
    close(make_error_code(errc::buffer_full));
    return;
  }
  try_read_progress();
}

void stream_core::held_plaintext_turn::run_ready() {
  core->read_requested_ = false;
  if (!core->closed_) core->bytes_arrived();
}

// ---------------------------------------------------------------- writes

void stream_core::require_write_room(std::size_t size) const {
  if (options_.max_write_buffer_size != 0 &&
      bytes_queued_ - bytes_sent_ + size > options_.max_write_buffer_size) {  // S31
    throw stream_buffer_full_error("write: " + std::to_string(size) +
                                   " bytes would exceed max_write_buffer_size=" +
                                   std::to_string(options_.max_write_buffer_size) + " (" +
                                   std::to_string(bytes_queued_ - bytes_sent_) + " bytes unsent)");
  }
}

task<void> stream_core::wait_for_queued() {
  if (bytes_queued_ == bytes_sent_) return make_ready_task();  // S30: nothing pending
  // The gathered send leaves at the end of this turn, even if no waiter can be made below.
  loop_.add_turn_hook(*this);
  auto* op = new write_wait();
  op->until = bytes_queued_;
  op->previous = waiters_tail_;
  (waiters_tail_ != nullptr ? waiters_tail_->next : waiters_head_) = op;
  waiters_tail_ = op;
  op->attach_owner(this);
  return task<void>::from_op(op);
}

void stream_core::unlink_waiter(write_wait& waiter) noexcept {
  (waiter.previous != nullptr ? waiter.previous->next : waiters_head_) = waiter.next;
  (waiter.next != nullptr ? waiter.next->previous : waiters_tail_) = waiter.previous;
  waiter.next = waiter.previous = nullptr;
}

bool stream_core::merge_into_last_piece(std::string_view data) {
  if (data.empty() || tls_ || pieces_.size() == pieces_in_flight_ ||
      pieces_.back().size() + data.size() > merge_small_write_limit) {
    return false;
  }
  std::string& last = pieces_.back();
  if (last.capacity() < last.size() + data.size()) {
    // Grow once to the whole limit, into a spare when there is one, so that the pieces of a
    // turn of pipelined lines grow no string step by step.
    std::string wide = spare_strings::local().take_wide();
    wide.reserve(merge_small_write_limit);  // may throw (B13): nothing has changed yet
    wide.assign(last);
    std::swap(wide, last);
    recycle_piece(wide);
  }
  last.append(data);
  bytes_queued_ += data.size();
  return true;
}

namespace {
[[noreturn]] void throw_write_after_shutdown() {
  throw std::logic_error("write: the stream's sending side was shut down (shutdown_write)");
}
}  // namespace

task<void> stream_core::write(std::string_view data) {
  if (closed_) return make_failed_task<void>(closed_error("write"));  // S32
  if (write_shut_) throw_write_after_shutdown();
  require_write_room(data.size());
  if (merge_into_last_piece(data)) return wait_for_queued();
  // Copy into a recycled string: no allocation once its capacity suffices.
  std::string copy = spare_strings::local().take_for_copy(data.size());
  copy.assign(data);
  return queue_piece(std::move(copy));
}

task<void> stream_core::write(std::string&& data) {
  if (closed_) return make_failed_task<void>(closed_error("write"));  // S32
  if (write_shut_) throw_write_after_shutdown();
  require_write_room(data.size());
  // Why copy a string we could keep: one contiguous piece per turn instead of one iovec per
  // small write measured 5-16 % less server CPU per pipelined line (mostly in the kernel).
  if (merge_into_last_piece(data)) {
    recycle_piece(data);
    return wait_for_queued();
  }
  return queue_piece(std::move(data));
}

task<void> stream_core::queue_piece(std::string&& data) {
  if (!data.empty()) {
    const std::size_t n = data.size();
    (tls_ ? plain_pending_ : pieces_).push_back(std::move(data));  // may throw: count after
    bytes_queued_ += n;
  }
  return wait_for_queued();
}

void stream_core::flush() {
  if (tls_ && !closed_) encrypt_pending();
  if (closed_ || write_op_ != nullptr || pieces_.empty()) return;
  try {
    submit_pieces();
  } catch (const std::bad_alloc&) {
    // B13: the send could not be prepared; the queued writes would wait forever, so the
    // stream closes and they fail with stream_closed_error{ENOMEM}.
    close(std::make_error_code(std::errc::not_enough_memory));
  }
}

void stream_core::submit_pieces() {
  io_op& op = *loop_.acquire_op();
  try {
    fill_and_submit(op);
  } catch (...) {
    write_op_ = nullptr;
    pieces_in_flight_ = 0;
    loop_.release_op(&op);
    throw;
  }
}

void stream_core::fill_and_submit(io_op& op) {
  op.fd = fd_;
  op.handler = this;
  if (kind_ == stream::transport_kind::socket) {
    op.kind = op_kind::sendmsg;
    std::size_t total = 0;
    std::size_t count = 0;
    for (const std::string& piece : pieces_) {
      if (count == max_pieces_per_send || total == max_bytes_per_send) break;
      const char* base = piece.data() + (count == 0 ? front_offset_ : 0);
      std::size_t len = piece.size() - (count == 0 ? front_offset_ : 0);
      len = std::min(len, max_bytes_per_send - total);
      op.iov.push_back({const_cast<char*>(base), len});
      total += len;
      ++count;
    }
    pieces_in_flight_ = count;
  } else {
    op.kind = op_kind::write;
    op.source = pieces_.front().data() + front_offset_;
    op.length = std::min(pieces_.front().size() - front_offset_, max_bytes_per_send);
    pieces_in_flight_ = 1;
  }
  write_op_ = &op;
  loop_.submit(op);
}

void stream_core::on_write_done(int result) {
  pieces_in_flight_ = 0;
  if (result < 0) {
    if (result != -ECANCELED) close(std::error_code(-result, std::generic_category()));  // S33
    return;
  }
  std::size_t sent = static_cast<std::size_t>(result);
  account_sent(sent);
  while (sent > 0 && !pieces_.empty()) {
    std::size_t left = pieces_.front().size() - front_offset_;
    if (sent >= left) {
      sent -= left;
      recycle_piece(pieces_.front());
      pieces_.pop_front();
      front_offset_ = 0;
    } else {
      front_offset_ += sent;
      sent = 0;
    }
  }
  complete_writes();
  flush();  // B4: keep going after a short send
  if (write_shut_) shut_down_when_sent();
}

void stream_core::shutdown_write() {
  if (closed_ || write_shut_) return;
  if (kind_ != stream::transport_kind::socket) {
    throw std::logic_error("shutdown_write: only a socket stream can be half-closed");
  }
  if (tls_ && !tls_->handshake_done()) {
    throw std::logic_error("shutdown_write: the TLS handshake has not finished");
  }
  if (tls_) {
    // The application data first, then the alert: at once if everything is encrypted, else
    // encrypt_pending queues it after the last record.
    close_notify_owed_ = true;
    encrypt_pending();
    if (closed_) return;
    if (close_notify_owed_ && plain_pending_.empty()) {
      close_notify_owed_ = false;
      tls_->shutdown();
      queue_tls_output();
    }
  }
  write_shut_ = true;
  shut_down_when_sent();
}

void stream_core::shut_down_when_sent() noexcept {
  if (fin_sent_ || closed_ || fd_ < 0 || write_op_ != nullptr || !pieces_.empty() ||
      !plain_pending_.empty() || close_notify_owed_) {
    return;
  }
  fin_sent_ = true;
  ++loop_.mutable_stats().syscalls;
  // An error (ENOTCONN: the peer is gone) is left to the reads to find.
  ::shutdown(fd_, SHUT_WR);
}

void stream_core::recycle_piece(std::string& piece) noexcept { spare_strings::local().give(piece); }

void stream_core::complete_writes() noexcept {
  while (waiters_head_ != nullptr && waiters_head_->until <= bytes_sent_) {
    write_wait* op = waiters_head_;
    unlink_waiter(*op);
    op->complete();
    op->detach_owner();
  }
}

void stream_core::fail_writes(const std::exception_ptr& error) noexcept {
  while (write_wait* op = waiters_head_) {
    unlink_waiter(*op);
    op->fail(error);
    op->detach_owner();
  }
}

// ---------------------------------------------------------------- completion plumbing

void stream_core::on_io_complete(io_op& op) {
  int result = op.result;
  if (&op == read_op_) {
    // The op stays with the stream for its next read (a multishot one stays armed): a read
    // per message then takes no op from the pool and resets none.
    read_requested_ = false;
    on_read_done(result);
  } else if (&op == write_op_) {
    // Not kept like the read op: an idle connection would hold it (400 bytes, a fifth of
    // the idle-connection budget) for the few instructions a pool round trip costs.
    write_op_ = nullptr;
    loop_.release_op(&op);
    on_write_done(result);
  } else {
    loop_.release_op(&op);
  }
}

void stream_core::abandon(pending_op_base& op) noexcept {
  if (&op == handshake_waiter_) {
    handshake_waiter_ = nullptr;
    op.detach_owner();
    return;
  }
  if (&op == read_.string_op || &op == read_.count_op) {
    clear_read();  // S13: withdrawn; every byte stays buffered
    op.detach_owner();
    return;
  }
  // Every other op a stream hands out is a write's (wait_for_queued).
  unlink_waiter(static_cast<write_wait&>(op));  // S28: the bytes still go out; only the
  op.detach_owner();                            // waiting stops
}

// ---------------------------------------------------------------- closing

void stream_core::release_transport() noexcept {
  if (released_) return;
  released_ = true;
  if (write_op_ != nullptr && write_op_->in_flight) {
    if (auto* pinned = new (std::nothrow) pinned_pieces()) {
      pinned->pieces = std::move(pieces_);
      write_op_->pinned.reset(pinned);
    } else {
      // B13: no memory to hand the pieces to the op: make the kernel let go of them now.
      loop_.cancel_now(*write_op_);
    }
  }
  // A multishot receive stays armed while the stream is idle, and a single-shot one is in
  // flight while a read waits. Ending it now (one synchronous cancel) lets the fd close at
  // once, as it does when no receive is in flight, instead of a loop turn later; its
  // completion then needs no fd.
  io_op* read_needing_fd = read_op_;
  if (read_op_ != nullptr && (read_op_->multishot || read_op_->in_flight)) {
    loop_.cancel_now(*read_op_);
    read_needing_fd = nullptr;
  }
  io_op* need_fd[] = {read_needing_fd, write_op_};
  if (fd_ >= 0) loop_.close_fd_after(fd_, need_fd);
  fd_ = -1;
  for (io_op* op : {read_op_, write_op_}) {
    if (op != nullptr) loop_.orphan(*op);
  }
  read_op_ = write_op_ = nullptr;
  read_requested_ = false;
}

void stream_core::close(std::error_code reason) noexcept {
  if (closed_) {
    // Tornado runs a callback set after the close when close() is called again (S38).
    queue_close_callback();
    return;
  }
  closed_ = true;
  error_ = reason;
  if (tls_) send_close_notify();
  release_transport();
  loop_.remove_turn_hook(*this);
  // S37: read_until_close completes (except after overflow, D5); a satisfiable read
  // completes; everything else fails with stream_closed_error{error()}.
  if (read_.kind == read_kind::until_close) {
    if (error_ == errc::buffer_full) {
      fail_read(closed_error("read_until_close"));
    } else {
      std::string rest;
      try {
        rest = buffer_.take(buffer_.size());
      } catch (...) {  // B13: the read fails with std::bad_alloc
        fail_read(std::current_exception());
      }
      if (read_.kind != read_kind::none) {
        pending_op<std::string>* op = read_.string_op;
        clear_read();
        op->complete(std::move(rest));
        op->detach_owner();
      }
    }
  } else if (read_.kind != read_kind::none) {
    try {
      std::size_t consume = 0;
      verdict v = evaluate(consume);
      if (v == verdict::ready) {
        complete_read(consume);
      } else if (v == verdict::unsatisfiable || error_ == errc::unsatisfiable_read) {
        fail_read(std::make_exception_ptr(stream_closed_error(unsatisfiable_message(), error_)));
      } else {
        fail_read(closed_error(read_.name));
      }
    } catch (...) {
      // B13's bad_alloc, or a regex PCRE2 cannot decide (regex_error, as in
      // try_read_progress): over TLS the bytes and the close_notify can come in one receive,
      // so this is the first look at them, and close() is noexcept. The read fails with it.
      fail_read(std::current_exception());
    }
  }
  if (tls_ && !tls_->handshake_done() && !handshake_error_ && error_) {
    // S53: closed by an OS error (or a reason) during the handshake: the handshake op gets
    // that raw error, now and from later wait_for_handshake calls, not stream_closed_error.
    try {
      handshake_error_ =
          std::make_exception_ptr(tls_error("TLS handshake failed: " + error_.message(), error_));
    } catch (...) {
      handshake_error_ = std::current_exception();
    }
  }
  if (handshake_waiter_ != nullptr) {  // S37 step 4: the raw error, or closed{none}
    pending_op<void>* waiter = std::exchange(handshake_waiter_, nullptr);
    waiter->fail(handshake_error_ ? handshake_error_ : closed_error("wait_for_handshake"));
    waiter->detach_owner();
  }
  // Why the check: the error (two strings) is built only when a write waits for it.
  if (waiters_head_ != nullptr) fail_writes(closed_error("write"));
  pieces_.clear();  // S36: unsent data is discarded
  plain_pending_.clear();
  plain_front_offset_ = 0;
  front_offset_ = 0;
  bytes_sent_ = bytes_queued_;
  queue_close_callback();  // S38: after those continuations
}

void stream_core::queue_close_callback() {
  // S38: the callback is taken now, at close time, so replacing or clearing it afterwards
  // neither stops it nor runs the new one (Tornado schedules it inside close()).
  if (!close_callback_) return;
  close_notice_.callbacks.push_back(std::move(close_callback_));
  close_callback_ = nullptr;
  if (!close_notice_.queued()) loop_.schedule(close_notice_);
}

void stream_core::close_by_user(std::error_code reason) noexcept {
  if (!closed_) send_queued_now();
  close(reason);
}

void stream_core::send_queued_now() noexcept {
  if (fd_ < 0 || write_op_ != nullptr) return;
  if (tls_) {
    // Encrypted now, sent by close(): send_close_notify makes the one attempt, so that a
    // close_notify follows only records that went out.
    try {
      encrypt_pending();
    } catch (...) {
    }
    return;
  }
  send_pieces_now();
}

void stream_core::send_pieces_now() noexcept {
  if (fd_ < 0 || write_op_ != nullptr || pieces_.empty()) return;
  iovec iov[64];
  int count = 0;
  for (const std::string& piece : pieces_) {
    if (count == 64) break;
    std::size_t skip = count == 0 ? front_offset_ : 0;
    iov[count++] = {const_cast<char*>(piece.data() + skip), piece.size() - skip};
  }
  ++loop_.mutable_stats().syscalls;
  ssize_t sent;
  if (kind_ == stream::transport_kind::socket) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<std::size_t>(count);
    sent = ::sendmsg(fd_, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  } else {
    sent = ::writev(fd_, iov, count);  // pipes are non-blocking; SIGPIPE is blocked
  }
  if (sent <= 0) return;
  std::size_t left = static_cast<std::size_t>(sent);
  while (left > 0 && !pieces_.empty()) {
    std::size_t rest = pieces_.front().size() - front_offset_;
    if (left >= rest) {
      left -= rest;
      pieces_.pop_front();
      front_offset_ = 0;
    } else {
      front_offset_ += left;
      left = 0;
    }
  }
  account_sent(static_cast<std::size_t>(sent));
  complete_writes();
}

void stream_core::close_notice::run_ready() {
  event_loop& loop = core->loop_;
  std::vector<std::function<void()>> pending = std::move(callbacks);
  callbacks.clear();
  // A callback may destroy the stream (and this node): only locals are used from here on.
  run_close_callbacks(loop, pending);
}

void stream_core::set_close_callback(std::function<void()> callback) {
  // Why reserve: close() is noexcept and queues the callback; the room is made here (B13).
  if (callback) close_notice_.callbacks.reserve(close_notice_.callbacks.size() + 1);
  close_callback_ = std::move(callback);
  maybe_watch_idle();
}

}  // namespace detail

// ---------------------------------------------------------------- stream handle

namespace {
detail::stream_core& require(detail::stream_core* core, const char* what) {
  if (core == nullptr) {
    throw std::logic_error(std::string("corio::stream::") + what +
                           ": the stream is empty (default-constructed or moved from)");
  }
  return *core;
}
}  // namespace

stream::stream() noexcept = default;
stream::stream(int fd, transport_kind kind, stream_options options) {
  try {
    core_ = new detail::stream_core(event_loop::current(), fd, kind, options);
  } catch (...) {
    // B13: the stream was given the fd; failing to adopt it must not leak it. io::close drops
    // the epoll registration too (a connect registered it), or the reused number would hang.
    io::close(fd);
    throw;
  }
}
stream::stream(stream&& other) noexcept : core_(std::exchange(other.core_, nullptr)) {}
stream& stream::operator=(stream&& other) noexcept {
  if (this != &other) {
    delete core_;
    core_ = std::exchange(other.core_, nullptr);
  }
  return *this;
}
stream::~stream() { delete core_; }

namespace {
/// Runs a read call; if it throws after registering the read (std::bad_alloc, B13), the read
/// is unregistered so that the stream stays usable (no phantom "already reading", no leak).
template <class Call>
auto guarded_read(detail::stream_core& core, Call call) -> decltype(call(core)) {
  // Why read_pending, not reading(): a TLS stream whose handshake is under way is "reading"
  // with no read registered, and a read that throws after registering must still be undone.
  const bool was_reading = core.read_pending();
  try {
    return call(core);
  } catch (...) {
    if (!was_reading) core.abandon_read();
    throw;
  }
}
}  // namespace

task<std::string> stream::read_until(std::string_view delimiter, std::size_t max_bytes) {
  return guarded_read(require(core_, "read_until"),
                      [&](detail::stream_core& c) { return c.read_until(delimiter, max_bytes); });
}
task<std::string> stream::read_until_regex(std::string_view pattern, std::size_t max_bytes) {
  return guarded_read(require(core_, "read_until_regex"), [&](detail::stream_core& c) {
    return c.read_until_regex(pattern, max_bytes);
  });
}
task<std::string> stream::read_bytes(std::size_t n, bool partial) {
  return guarded_read(require(core_, "read_bytes"),
                      [&](detail::stream_core& c) { return c.read_bytes(n, partial); });
}
task<std::size_t> stream::read_into(std::span<std::byte> into, bool partial) {
  return guarded_read(require(core_, "read_into"),
                      [&](detail::stream_core& c) { return c.read_into(into, partial); });
}
task<std::string> stream::read_until_close() {
  return guarded_read(require(core_, "read_until_close"),
                      [&](detail::stream_core& c) { return c.read_until_close(); });
}
task<void> stream::write(std::string_view data) { return require(core_, "write").write(data); }
task<void> stream::write(std::string&& data) {
  return require(core_, "write").write(std::move(data));
}
void stream::shutdown_write() { require(core_, "shutdown_write").shutdown_write(); }
void stream::close() noexcept {
  if (core_) core_->close_by_user({});
}
void stream::close(std::error_code reason) noexcept {
  if (core_) core_->close_by_user(reason);
}
bool stream::closed() const noexcept { return core_ == nullptr || core_->closed(); }
bool stream::reading() const noexcept { return core_ != nullptr && core_->reading(); }
bool stream::writing() const noexcept { return core_ != nullptr && core_->writing(); }
std::error_code stream::error() const noexcept {
  return core_ ? core_->error() : std::error_code{};
}
void stream::set_close_callback(std::function<void()> callback) {
  require(core_, "set_close_callback").set_close_callback(std::move(callback));
}
std::size_t stream::buffered_bytes() const noexcept { return core_ ? core_->buffered_bytes() : 0; }
std::string_view stream::peek() const noexcept {
  return core_ ? core_->buffered() : std::string_view();
}
int stream::native_handle() const noexcept { return core_ ? core_->fd() : -1; }
const stream_options& stream::options() const noexcept {
  static const stream_options defaults{};
  return core_ ? core_->options() : defaults;
}

}  // namespace corio
