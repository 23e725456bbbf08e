// lib/tls_session.hpp - one OpenSSL connection over memory BIOs: ciphertext in, plaintext out.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include "read_buffer.hpp"

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct bio_st BIO;

namespace corio::detail {

/// Empties OpenSSL's thread-local error queue into one line ("" if it was empty).
std::string drain_openssl_errors();

/// Drives OpenSSL without touching any fd, so it works the same on a completion ring and on
/// epoll: the stream moves ciphertext with the loop's operations and hands it here.
class tls_session {
 public:
  enum class status { ok, want_input, closed, failed };

  /// Throws tls_error if the SSL object cannot be made, or if a client's server_hostname
  /// cannot be sent as SNI or checked.
  tls_session(SSL_CTX* context, bool server, std::string_view server_hostname, bool check_hostname,
              bool truncation_is_error);
  ~tls_session();
  tls_session(const tls_session&) = delete;
  tls_session& operator=(const tls_session&) = delete;

  /// Ciphertext received from the transport.
  void feed(std::span<const std::byte> ciphertext);
  /// Advances the handshake. ok: done; want_input: needs more ciphertext; failed: see error().
  status handshake();
  bool handshake_done() const noexcept { return handshake_done_; }
  /// Decrypts into `out` what can be decrypted, up to `budget` bytes: the rest stays inside
  /// OpenSSL (input_pending()). ok: progress or nothing yet (want input); closed: the peer
  /// sent close_notify; failed: see error().
  status decrypt(read_buffer& out, std::size_t budget);
  /// True if the last decrypt stopped at its budget: OpenSSL may hold more plaintext, which
  /// the next decrypt takes without more ciphertext.
  bool plaintext_held() const noexcept { return plaintext_held_; }
  /// Encrypts `plaintext` (after the handshake) into the output, which grows by about its
  /// size: take it in chunks for large amounts. Returns false on failure (see error()).
  bool encrypt(std::string_view plaintext);
  /// Queues close_notify.
  void shutdown() noexcept;
  /// Ciphertext waiting to be sent.
  bool has_output() const noexcept;
  /// How many ciphertext bytes wait to be taken.
  std::size_t pending_output() const noexcept;
  std::string take_output();

  bool truncation_is_error() const noexcept { return truncation_is_error_; }
  bool received_close_notify() const noexcept { return received_close_notify_; }
  /// The failure: a code in tls_category or x509_category, and a message with the reason.
  std::error_code error() const noexcept { return error_; }
  const std::string& error_message() const noexcept { return error_message_; }

  SSL* native() const noexcept { return ssl_; }

 private:
  void record_failure(int ssl_error, const char* during);
  /// Client: SNI and the name check for `host`; throws tls_error if OpenSSL cannot do them.
  void set_server_name(const std::string& host, bool check_hostname);

  SSL* ssl_ = nullptr;
  BIO* input_ = nullptr;   // network -> SSL
  BIO* output_ = nullptr;  // SSL -> network
  bool handshake_done_ = false;
  bool received_close_notify_ = false;
  bool plaintext_held_ = false;
  std::string server_name_;  // a client's name for the server, for failure messages
  bool truncation_is_error_ = true;
  std::error_code error_;
  std::string error_message_;
};

}  // namespace corio::detail
