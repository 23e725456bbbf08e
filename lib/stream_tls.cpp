// The TLS half of the stream engine: ciphertext moves through the same read and write paths
// as plain bytes; plaintext lands in the same buffer, so every stream rule holds over TLS.
#include <errno.h>

#include <stdexcept>

#include "stream_core.hpp"

namespace corio::detail {

void stream_core::cipher_sink::commit(std::size_t n) noexcept {
  scratch.commit(n);
  core->tls_->feed(std::as_bytes(std::span(scratch.data(), scratch.size())));
  scratch.consume(scratch.size());
}

void stream_core::start_tls(std::unique_ptr<tls_session> tls) {
  if (closed_) throw stream_closed_error("start_tls: stream is closed", error_);
  if (read_.kind != read_kind::none || writing() || !buffer_.empty() || write_op_ != nullptr ||
      tls_) {
    throw std::logic_error(
        "start_tls: the stream is not idle (a read or write is pending, data is buffered, or "
        "TLS is already on) (S52)");
  }
  tls_ = std::move(tls);
  // Write waiters count plaintext bytes since the stream began, plain ones included: the
  // checkpoints must continue that count (a STARTTLS reply awaited after a plain write).
  plain_encrypted_ = bytes_queued_;
  // Every later byte goes through TLS. A receive delivers into its sink only at its
  // completion (a multishot one when it answers), so what it holds or gets from now on is
  // ciphertext: it switches sink. Cancelling one in flight instead (the idle watch, or a
  // stream's single-shot first receive on io_uring) could drop a ClientHello it already took.
  if (read_op_ != nullptr) read_op_->sink = &cipher_sink_;
  if (tls_->handshake() == tls_session::status::failed) return fail_handshake();
  queue_tls_output();  // the ClientHello, for a client
  want_transport_read();
}

task<void> stream_core::wait_for_handshake() {
  if (handshake_waiter_ != nullptr) {
    throw std::logic_error("wait_for_handshake: already waiting (one waiter at a time, S54)");
  }
  if (!tls_) throw std::logic_error("wait_for_handshake: the stream does not use TLS");
  if (handshake_error_) return make_failed_task<void>(handshake_error_);
  if (tls_->handshake_done()) return make_ready_task();
  if (closed_) return make_failed_task<void>(closed_error("wait_for_handshake"));
  auto* op = new pending_op<void>();
  op->attach_owner(this);
  handshake_waiter_ = op;
  return task<void>::from_op(op);
}

bool stream_core::pump_tls() {
  if (!tls_->handshake_done()) {
    tls_session::status st = tls_->handshake();
    queue_tls_output();
    if (st == tls_session::status::failed) {
      fail_handshake();
      return false;
    }
    if (st == tls_session::status::want_input) {
      want_transport_read();
      return false;
    }
    handshake_finished();
  }
  // At most read_chunk_size bytes, as a plain receive brings (S2): a whole receive's records
  // at once could overfill a small max_buffer_size that the reads themselves never reach.
  tls_session::status st = tls_->decrypt(buffer_, options_.read_chunk_size);
  queue_tls_output();  // TLS 1.3 key updates and session tickets may need answers (E13)
  if (st == tls_session::status::failed) {
    close(tls_->error());
    return false;
  }
  if (st == tls_session::status::closed) {  // close_notify: a clean EOF (E9)
    close({});
    return false;
  }
  return true;
}

void stream_core::on_tls_eof() {
  if (!tls_->handshake_done()) {
    // Why not ECONNRESET: a reset arrives as that OS error on the receive and is reported
    // as such; an orderly EOF is a truncated TLS stream (no close_notify, S53's "TLS EOF
    // error"), whatever set_truncation_is_error says, since the handshake cannot finish.
    std::error_code truncated = make_error_code(errc::tls_truncated);
    handshake_error_ = std::make_exception_ptr(tls_error(
        "TLS handshake failed: the peer closed the connection during the handshake", truncated));
    close(truncated);
    return;
  }
  // D10: like an EOF for every read rule, but a missing close_notify is recorded.
  if (!tls_->received_close_notify() && tls_->truncation_is_error()) {
    close(make_error_code(errc::tls_truncated));
  } else {
    close({});
  }
}

void stream_core::queue_tls_output() {
  if (!tls_->has_output()) return;
  std::string cipher = tls_->take_output();
  wire_queued_ += cipher.size();
  pieces_.push_back(std::move(cipher));
  if (!closed_) loop_.add_turn_hook(*this);
}

void stream_core::encrypt_pending() {
  if (!tls_->handshake_done() || plain_pending_.empty()) return;  // S54: held until then
  // Why chunks: the ciphertext is taken out of OpenSSL's memory BIO every encrypt_chunk
  // bytes, so a huge write never grows that BIO (whose memory it keeps for the life of the
  // connection) to its whole size, never needs a copy of that size, and no length passed to
  // OpenSSL (an int) can overflow. Small writes still make one piece per flush.
  constexpr std::size_t encrypt_chunk = 1 << 20;
  // Why a window: encrypting a huge write whole stalled the loop (about 0.5 s per GiB) and
  // held all its ciphertext, which a close discards; the socket takes a few MiB at most per
  // send, and each send's completion encrypts more (flush).
  constexpr std::size_t encrypt_ahead = 4 << 20;
  while (!plain_pending_.empty() && wire_queued_ - wire_sent_ < encrypt_ahead) {
    const std::string& plain = plain_pending_.front();
    std::string_view part = std::string_view(plain).substr(plain_front_offset_, encrypt_chunk);
    if (!tls_->encrypt(part)) {
      close(tls_->error());
      return;
    }
    plain_front_offset_ += part.size();
    plain_encrypted_ += part.size();
    if (plain_front_offset_ == plain.size()) {
      plain_pending_.pop_front();
      plain_front_offset_ = 0;
    }
    if (tls_->pending_output() >= encrypt_chunk) queue_ciphertext();
  }
  queue_ciphertext();
  if (plain_pending_.empty() && close_notify_owed_) {
    close_notify_owed_ = false;  // shutdown_write(): the alert after the last record
    tls_->shutdown();
    queue_tls_output();
  }
}

void stream_core::queue_ciphertext() {
  std::string cipher = tls_->take_output();
  if (cipher.empty()) return;
  wire_queued_ += cipher.size();
  pieces_.push_back(std::move(cipher));
  checkpoints_.push_back({wire_queued_, plain_encrypted_});  // S29: sent once this is
}

void stream_core::account_sent(std::size_t wire_bytes) {
  if (!tls_) {
    bytes_sent_ += wire_bytes;
    return;
  }
  wire_sent_ += wire_bytes;
  while (!checkpoints_.empty() && checkpoints_.front().wire <= wire_sent_) {
    bytes_sent_ = checkpoints_.front().plain;
    checkpoints_.pop_front();
  }
}

void stream_core::handshake_finished() {
  if (handshake_waiter_ != nullptr) {
    pending_op<void>* waiter = std::exchange(handshake_waiter_, nullptr);
    waiter->complete();
    waiter->detach_owner();
  }
  if (!plain_pending_.empty()) loop_.add_turn_hook(*this);  // S54: held writes go now
}

void stream_core::fail_handshake() {
  handshake_error_ = std::make_exception_ptr(tls_error(tls_->error_message(), tls_->error()));
  // The alert OpenSSL produced still goes out before the fd closes.
  close(tls_->error());
}

void stream_core::send_close_notify() noexcept {
  if (fd_ < 0 || released_ || write_op_ != nullptr) return;
  if (write_shut_) {
    // shutdown_write() queued the data's records and the alert already: they get the one
    // non-blocking attempt that close() promises (what is left is discarded, S36).
    send_pieces_now();
    return;
  }
  try {
    if (tls_->handshake_done()) {
      plain_pending_.clear();  // S36: never encrypted, so dropping it is invisible to the peer
      plain_front_offset_ = 0;
      // Every record carries the next sequence number: a close_notify sent after a record
      // that was not would fail the peer's decryption ("bad record mac", as if tampered
      // with). So the queued records (a just-queued session ticket or alert, or data this
      // close discards) get one non-blocking attempt; if any is left, it is discarded (S36)
      // and nothing follows it: the peer sees a truncation (D10), which is what happened.
      if (!pieces_.empty()) send_pieces_now();
      if (!pieces_.empty()) return;
      tls_->shutdown();  // close_notify (E9)
    } else if (front_offset_ > 0) {
      return;  // a handshake record is half sent: an alert now would corrupt it
    }
    // During a handshake pieces_ hold only handshake records and the failure alert (E7).
    if (tls_->has_output()) pieces_.push_back(tls_->take_output());
    if (!pieces_.empty()) submit_pieces();  // orphaned by release_transport; fd closes after
  } catch (...) {
  }
}

}  // namespace corio::detail
