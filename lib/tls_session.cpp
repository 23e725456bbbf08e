#include "tls_session.hpp"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <climits>

#include "corio/errors.hpp"
#include "corio/tls.hpp"

namespace corio::detail {
std::string drain_openssl_errors() {
  std::string text;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!text.empty()) text += "; ";
    text += buf;
  }
  return text;
}

namespace {

bool is_ip_literal(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

tls_session::tls_session(SSL_CTX* context, bool server, std::string_view server_hostname,
                         bool check_hostname, bool truncation_is_error)
    : truncation_is_error_(truncation_is_error) {
  ERR_clear_error();  // E16: a failure on an earlier connection must not leak into this one
  ssl_ = SSL_new(context);
  input_ = BIO_new(BIO_s_mem());
  output_ = BIO_new(BIO_s_mem());
  if (ssl_ == nullptr || input_ == nullptr || output_ == nullptr) {
    std::string why = drain_openssl_errors();
    if (ssl_) SSL_free(ssl_);
    if (input_) BIO_free(input_);
    if (output_) BIO_free(output_);
    throw tls_error("TLS: cannot create a connection: " + why);
  }
  // Why: an empty memory BIO reports "retry" instead of EOF, which is what makes
  // SSL_read say WANT_READ while more ciphertext may still arrive.
  BIO_set_mem_eof_return(input_, -1);
  BIO_set_mem_eof_return(output_, -1);
  SSL_set_bio(ssl_, input_, output_);
  if (server) {
    SSL_set_accept_state(ssl_);
    return;
  }
  SSL_set_connect_state(ssl_);
  try {
    set_server_name(std::string(server_hostname), check_hostname);
  } catch (...) {
    SSL_free(ssl_);  // the destructor does not run: free the SSL and both BIOs here
    throw;
  }
}

void tls_session::set_server_name(const std::string& host, bool check_hostname) {
  if (host.empty()) return;
  server_name_ = host;
  // OpenSSL takes C strings: a name with a NUL byte would be sent and checked cut short.
  if (host.find('\0') != std::string::npos) {
    throw tls_error("TLS: the host name contains a NUL byte, so it cannot be checked");
  }
  // SNI only for names: RFC 6066 forbids IP literals in server_name (E5).
  const bool is_ip = is_ip_literal(host);
  if (!is_ip && SSL_set_tlsext_host_name(ssl_, host.c_str()) != 1) {
    throw tls_error("TLS: cannot send the host name \"" + host +
                    "\" as SNI: " + drain_openssl_errors());
  }
  if (!check_hostname) return;
  // Why throw: going on would connect without checking the name at all (S55).
  const int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), host.c_str())
                       : SSL_set1_host(ssl_, host.c_str());
  if (ok != 1) {
    throw tls_error("TLS: cannot check the host name \"" + host + "\": " + drain_openssl_errors());
  }
}

tls_session::~tls_session() { SSL_free(ssl_); }  // frees both BIOs too

void tls_session::feed(std::span<const std::byte> ciphertext) {
  if (!ciphertext.empty())
    BIO_write(input_, ciphertext.data(), static_cast<int>(ciphertext.size()));
}

tls_session::status tls_session::handshake() {
  if (handshake_done_) return status::ok;
  ERR_clear_error();
  int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    handshake_done_ = true;
    return status::ok;
  }
  int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return status::want_input;
  record_failure(err, "handshake");
  return status::failed;
}

tls_session::status tls_session::decrypt(read_buffer& out, std::size_t budget) {
  std::size_t added = 0;
  plaintext_held_ = false;
  while (added < budget) {
    ERR_clear_error();
    std::span<std::byte> space = out.prepare(std::min<std::size_t>(16 * 1024, budget - added));
    int n = SSL_read(ssl_, space.data(), static_cast<int>(space.size()));
    if (n > 0) {
      out.commit(static_cast<std::size_t>(n));
      added += static_cast<std::size_t>(n);
      continue;
    }
    int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return status::ok;
    if (err == SSL_ERROR_ZERO_RETURN) {
      received_close_notify_ = true;
      return status::closed;
    }
    record_failure(err, "read");
    return status::failed;
  }
  plaintext_held_ = true;
  return status::ok;
}

bool tls_session::encrypt(std::string_view plaintext) {
  while (!plaintext.empty()) {
    ERR_clear_error();
    int chunk = static_cast<int>(std::min<std::size_t>(plaintext.size(), 1 << 30));
    int n = SSL_write(ssl_, plaintext.data(), chunk);
    if (n <= 0) {
      record_failure(SSL_get_error(ssl_, n), "write");
      return false;
    }
    plaintext.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

void tls_session::shutdown() noexcept {
  ERR_clear_error();
  if (handshake_done_) SSL_shutdown(ssl_);
  ERR_clear_error();
}

bool tls_session::has_output() const noexcept { return BIO_ctrl_pending(output_) > 0; }

std::size_t tls_session::pending_output() const noexcept { return BIO_ctrl_pending(output_); }

std::string tls_session::take_output() {
  std::string out(BIO_ctrl_pending(output_), '\0');
  std::size_t taken = 0;
  while (taken < out.size()) {  // BIO_read takes an int
    int n = BIO_read(output_, out.data() + taken,
                     static_cast<int>(std::min<std::size_t>(out.size() - taken, INT_MAX)));
    if (n <= 0) break;
    taken += static_cast<std::size_t>(n);
  }
  out.resize(taken);
  return out;
}

void tls_session::record_failure(int ssl_error, const char* during) {
  long verify = SSL_get_verify_result(ssl_);
  // The whole queue goes into the message; the code is the reason of the oldest error of
  // OpenSSL's SSL library, which is what tls_category names (an error another library queued
  // first, ASN.1 or X.509, would read there as an unrelated SSL reason).
  const unsigned long first = ERR_peek_error();
  unsigned long first_ssl = 0;
  std::string reasons;
  while (unsigned long e = ERR_get_error()) {
    if (first_ssl == 0 && ERR_GET_LIB(e) == ERR_LIB_SSL) first_ssl = e;
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!reasons.empty()) reasons += "; ";
    reasons += buf;
  }
  const unsigned long cause = first_ssl != 0 ? first_ssl : first;
  // The verify result is the reason only when verification is what failed the handshake: it
  // also records a failure that was ignored (verification off), which a later unrelated
  // failure must not be reported as.
  const bool verify_failed =
      ERR_GET_LIB(cause) == ERR_LIB_SSL && ERR_GET_REASON(cause) == SSL_R_CERTIFICATE_VERIFY_FAILED;
  if (verify_failed && verify != X509_V_OK && !handshake_done_) {
    error_ = std::error_code(static_cast<int>(verify), x509_category());
    // Which server and which certificate: "hostname mismatch" alone does not say where.
    std::string subject;
    // The chain as received (a failed handshake leaves no verified peer certificate); a
    // client's chain starts with the server's own certificate.
    STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl_);
    if (chain != nullptr && sk_X509_num(chain) > 0) {
      if (char* line =
              X509_NAME_oneline(X509_get_subject_name(sk_X509_value(chain, 0)), nullptr, 0)) {
        subject = line;
        OPENSSL_free(line);
      }
    }
    error_message_ = std::string("TLS ") + during +
                     (server_name_.empty() ? "" : " with \"" + server_name_ + "\"") +
                     ": certificate verification failed: " + X509_verify_cert_error_string(verify) +
                     (subject.empty() ? "" : " (certificate subject " + subject + ")");
  } else if (cause != 0) {
    error_ = std::error_code(ERR_GET_REASON(cause), tls_category());
    error_message_ = std::string("TLS ") + during + " failed: " + reasons;
  } else if (ssl_error == SSL_ERROR_ZERO_RETURN) {
    // A close_notify before the handshake finished: the peer closed in an orderly way before
    // there was a connection, as an EOF there is (S53).
    error_ = make_error_code(errc::tls_truncated);
    error_message_ = std::string("TLS ") + during + " failed: the peer closed (close_notify)";
  } else if (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_SSL) {
    error_ = std::error_code(SSL_R_UNEXPECTED_EOF_WHILE_READING, tls_category());
    error_message_ = std::string("TLS ") + during + " failed: unexpected EOF";
  } else {
    // SSL_get_error's own values are not reasons: no code of tls_category fits.
    error_ = std::error_code(SSL_R_UNEXPECTED_MESSAGE, tls_category());
    error_message_ =
        std::string("TLS ") + during + " failed (SSL_get_error " + std::to_string(ssl_error) + ")";
  }
}

}  // namespace corio::detail
