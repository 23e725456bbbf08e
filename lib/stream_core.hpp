// lib/stream_core.hpp - the state behind a stream: buffer, read slot, write queue, transport.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "corio/detail/io_op.hpp"
#include "corio/detail/pending_op.hpp"
#include "corio/loop.hpp"
#include "corio/stream.hpp"
#include "read_buffer.hpp"
#include "regex_matcher.hpp"
#include "stable_queue.hpp"
#include "tls_session.hpp"

namespace corio::detail {

/// Everything a stream is, kept at a stable address so that in-flight operations can refer
/// to it while the `stream` handle moves. One read slot, one write queue, one transport fd.
/// The write queue: strings whose bytes the kernel may be reading (never relocated).
using piece_queue = stable_queue<std::string>;

class stream_core final : io_handler, recv_sink, op_owner, turn_hook {
 public:
  stream_core(event_loop& loop, int fd, stream::transport_kind kind, stream_options options);
  ~stream_core();

  task<std::string> read_until(std::string_view delimiter, std::size_t max_bytes);
  task<std::string> read_until_regex(std::string_view pattern, std::size_t max_bytes);
  task<std::string> read_bytes(std::size_t n, bool partial);
  task<std::size_t> read_into(std::span<std::byte> into, bool partial);
  task<std::string> read_until_close();
  task<void> write(std::string&& data);
  task<void> write(std::string_view data);

  void close(std::error_code reason) noexcept;
  /// stream::shutdown_write(): the FIN follows the bytes queued so far.
  void shutdown_write();
  /// close() called by the application: first one non-blocking attempt to send what is
  /// queued (what Tornado's inline write would already have sent), then close (S36). Over
  /// TLS the attempt is made by close() itself (send_close_notify), for every close.
  void close_by_user(std::error_code reason) noexcept;
  bool closed() const noexcept { return closed_; }
  /// A read call threw (std::bad_alloc, B13) after registering itself: no task was returned,
  /// so the read is unregistered and its op, if made, freed.
  void abandon_read() noexcept;
  /// True while a read call is registered (reading() also counts a TLS handshake).
  bool read_pending() const noexcept { return read_.kind != read_kind::none; }
  bool reading() const noexcept {
    return read_.kind != read_kind::none || (tls_ && !closed_ && !tls_->handshake_done());
  }
  bool writing() const noexcept { return !closed_ && bytes_queued_ > bytes_sent_; }
  std::error_code error() const noexcept { return error_; }
  void set_close_callback(std::function<void()> callback);
  std::size_t buffered_bytes() const noexcept { return buffer_.size(); }
  std::string_view buffered() const noexcept { return buffer_.view(); }
  const stream_options& options() const noexcept { return options_; }
  int fd() const noexcept { return fd_; }
  stream::transport_kind kind() const noexcept { return kind_; }
  event_loop& loop() const noexcept { return loop_; }

  // TLS (lib/stream_tls.cpp): the stream's bytes pass through `tls` from now on.
  /// Starts the handshake on an idle stream (S52); throws std::logic_error otherwise.
  void start_tls(std::unique_ptr<tls_session> tls);
  /// S53/S54: completes when the handshake has; fails with the raw error.
  task<void> wait_for_handshake();
  const tls_session* tls() const noexcept { return tls_.get(); }
  /// Ciphertext queued and not yet sent (tests: encryption stays a window ahead).
  std::size_t unsent_ciphertext() const noexcept { return wire_queued_ - wire_sent_; }

 private:
  enum class read_kind : std::uint8_t { none, until, regex, bytes, into, until_close };
  struct read_request {
    read_kind kind = read_kind::none;
    std::string delimiter;
    std::size_t max_bytes = 0;
    std::size_t count = 0;  // read_bytes / read_into: wanted bytes
    bool partial = false;
    std::span<std::byte> into;
    std::size_t scan_from = 0;  // read_until: where the next delimiter search starts
    const char* name = "";
    pending_op<std::string>* string_op = nullptr;
    pending_op<std::size_t>* count_op = nullptr;
  };
  /// The outcome of checking the read slot against the buffer.
  enum class verdict : std::uint8_t { wait, ready, unsatisfiable };

  void begin_read(read_kind kind, const char* name);
  verdict evaluate(std::size_t& consume);
  /// True if the pending read, given exactly `bytes` in an empty buffer, would take them all.
  bool read_takes_all(std::string_view bytes) const noexcept;
  template <class T>
  task<T> finish_at_call(verdict v, std::size_t consume);
  void complete_read(std::size_t consume);
  void fail_read(std::exception_ptr error) noexcept;
  void clear_read() noexcept;
  std::string unsatisfiable_message() const;
  std::exception_ptr closed_error(const char* what) const noexcept;
  void fill_and_submit(io_op& op);
  void try_read_progress();
  void want_transport_read();
  void maybe_watch_idle();

  void flush();
  /// After shutdown_write(): shuts the socket's sending side once nothing is left to send.
  void shut_down_when_sent() noexcept;
  void require_write_room(std::size_t size) const;  // S31, throws stream_buffer_full_error
  /// Appends a small write to the last piece not yet handed to the kernel; false if it cannot.
  bool merge_into_last_piece(std::string_view data);
  /// Queues `data` as a piece of its own (the checks of write() done).
  task<void> queue_piece(std::string&& data);
  task<void> wait_for_queued();  // a task completing once everything queued so far is sent
  void send_queued_now() noexcept;
  /// One non-blocking send of what pieces_ hold (no encryption): close's last attempt.
  void send_pieces_now() noexcept;
  void submit_pieces();
  void complete_writes() noexcept;
  struct write_wait;  // below, with the write queue
  void unlink_waiter(write_wait& waiter) noexcept;
  void recycle_piece(std::string& piece) noexcept;
  void fail_writes(const std::exception_ptr& error) noexcept;

  // io_handler / recv_sink / op_owner / turn_hook
  void on_io_complete(io_op& op) override;
  std::span<std::byte> prepare(std::size_t max) override { return buffer_.prepare(max); }
  void commit(std::size_t n) noexcept override { buffer_.commit(n); }
  void deliver(std::span<const std::byte> bytes) override;
  std::size_t string_receive_size(std::size_t max) const noexcept override;
  void take_received(std::string&& bytes, std::size_t n) override;
  bool takes_received_strings() const noexcept override { return true; }
  void idle() noexcept override { buffer_.release_if_empty(); }
  bool has_room(std::size_t n) const noexcept override { return buffer_.has_room(n); }
  void abandon(pending_op_base& op) noexcept override;
  void before_wait() override { flush(); }

  void on_read_done(int result);
  // TLS plumbing (lib/stream_tls.cpp)
  bool pump_tls();  // after ciphertext arrived: handshake/decrypt; false if the stream closed
  // A receive (or plaintext held in OpenSSL) added to the buffer: S42's limit, then the read.
  void bytes_arrived();
  void on_tls_eof();
  void queue_tls_output();
  void encrypt_pending();
  void queue_ciphertext();  // what encrypt_pending's plaintext became: a piece and checkpoint
  void handshake_finished();
  void fail_handshake();
  void send_close_notify() noexcept;
  void account_sent(std::size_t wire_bytes);
  void on_write_done(int result);
  void release_transport() noexcept;

  event_loop& loop_;
  int fd_;
  stream::transport_kind kind_;
  bool write_only_ = false;  // the write end of a pipe: no reads, no idle watch
  stream_options options_;
  read_buffer buffer_;
  read_request read_;
  std::unique_ptr<regex_matcher> regex_;  // per-stream cache of the last pattern
  io_op* read_op_ = nullptr;              // the transport read op, kept for the next read
  bool read_requested_ = false;           // read_op_ was submitted and has not completed
  std::size_t last_receive_ = 0;          // bytes of the latest delivered receive (io_uring)

  // Write queue: pieces not yet fully sent; the first `pieces_in_flight_` are being sent.
  piece_queue pieces_;
  std::size_t front_offset_ = 0;  // bytes of pieces_.front() already sent
  std::size_t pieces_in_flight_ = 0;
  std::uint64_t bytes_queued_ = 0;  // cumulative, for O(1) write completion bookkeeping
  std::uint64_t bytes_sent_ = 0;
  /// A write's op, linked into the stream's FIFO of waiting writes: a write allocates this op
  /// and no queue node. Unlinked when it completes, fails, or its task is dropped (S28).
  struct write_wait final : pending_op<void> {
    std::uint64_t until = 0;  // done once bytes_sent_ reaches this
    write_wait* next = nullptr;
    write_wait* previous = nullptr;
  };
  write_wait* waiters_head_ = nullptr;
  write_wait* waiters_tail_ = nullptr;
  io_op* write_op_ = nullptr;  // the send in flight

  bool closed_ = false;
  bool released_ = false;
  bool write_shut_ = false;  // shutdown_write() was called: no more writes
  bool fin_sent_ = false;    // …and the socket's sending side is shut
  std::error_code error_;
  std::function<void()> close_callback_;

  // TLS state: plaintext waiting for the handshake/encryption; pieces_ then hold ciphertext.
  std::unique_ptr<tls_session> tls_;
  piece_queue plain_pending_;
  std::size_t plain_front_offset_ = 0;  // bytes of plain_pending_.front() already encrypted
  bool close_notify_owed_ = false;      // shutdown_write() waits for plain_pending_ to empty
  std::uint64_t plain_encrypted_ = 0;   // cumulative plaintext bytes handed to TLS
  std::uint64_t wire_queued_ = 0;       // cumulative ciphertext bytes queued in pieces_
  std::uint64_t wire_sent_ = 0;
  struct wire_checkpoint {
    std::uint64_t wire;   // once this much ciphertext is sent…
    std::uint64_t plain;  // …this much plaintext counts as sent (S29)
  };
  stable_queue<wire_checkpoint> checkpoints_;
  pending_op<void>* handshake_waiter_ = nullptr;
  std::exception_ptr handshake_error_;
  struct cipher_sink final : recv_sink {
    stream_core* core = nullptr;
    read_buffer scratch;
    std::span<std::byte> prepare(std::size_t max) override { return scratch.prepare(max); }
    void commit(std::size_t n) noexcept override;
    void idle() noexcept override { scratch.release_if_empty(); }
  } cipher_sink_;
  struct close_notice final : ready_node {
    stream_core* core = nullptr;
    // S38: the callbacks taken at close time (the one set when the stream closed, then one
    // per later close() with a newly set callback), run in that order from the loop.
    std::vector<std::function<void()>> callbacks;
    void run_ready() override;
  } close_notice_;
  // Runs bytes_arrived() for plaintext a budgeted decrypt left inside OpenSSL, in place of a
  // receive (want_transport_read).
  struct held_plaintext_turn final : ready_node {
    stream_core* core = nullptr;
    void run_ready() override;
  } held_plaintext_;
  void queue_close_callback();
};

}  // namespace corio::detail
