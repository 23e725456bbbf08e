// libFuzzer: a TLS server session fed arbitrary bytes as records fails cleanly (E12): no
// crash, no leak, and a failure always carries an error code and message.
#include <openssl/ssl.h>

#include <cstdint>
#include <span>

#include "corio/tls.hpp"
#include "read_buffer.hpp"
#include "tls_session.hpp"

namespace {
// A self-signed key pair made once (the handshake needs a certificate to get far).
corio::tls_context& server_context() {
  static corio::tls_context ctx = [] {
    corio::tls_context c(corio::tls_role::server);
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
    X509_set_pubkey(cert, key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("fuzz"), -1, -1, 0);
    X509_set_issuer_name(cert, X509_get_subject_name(cert));
    X509_sign(cert, key, EVP_sha256());
    SSL_CTX_use_certificate(c.native_handle(), cert);
    SSL_CTX_use_PrivateKey(c.native_handle(), key);
    X509_free(cert);
    EVP_PKEY_free(key);
    return c;
  }();
  return ctx;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  corio::detail::tls_session session(server_context().native_handle(), true, {}, false, true);
  corio::detail::read_buffer plain;
  std::size_t offset = 0;
  // Feed in a few slices so record boundaries fall anywhere.
  while (offset < size) {
    std::size_t n = std::min<std::size_t>(size - offset, 1 + data[offset] % 97);
    session.feed(std::as_bytes(std::span(data + offset, n)));
    offset += n;
    // A budget that varies with the input, so that decrypts also stop inside a record and
    // leave plaintext held in OpenSSL (the stream then takes it before receiving more).
    const std::size_t budget = 1 + n * 61;
    auto st = session.handshake_done() ? session.decrypt(plain, budget) : session.handshake();
    (void)session.take_output();
    if (st == corio::detail::tls_session::status::failed) {
      if (!session.error() || session.error_message().empty()) __builtin_trap();
      break;
    }
  }
  return 0;
}
