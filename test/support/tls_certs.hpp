// test/support/tls_certs.hpp - a throwaway PKI made at test time with the openssl command.
#pragma once

#include <string>

namespace corio::testing {

/// Paths of PEM files in a temporary directory, made once per test process:
/// a CA, a server certificate for localhost/127.0.0.1/::1 signed by it, a client certificate,
/// a second CA that signed nothing we trust, an expired server certificate and one for
/// another name.
struct test_pki {
  std::string dir;
  std::string ca_cert;
  std::string server_cert, server_key;          // SAN: localhost, 127.0.0.1, ::1
  std::string client_cert, client_key;          // CN=client (SAN DNS:corio-client), by the CA
  std::string other_name_cert, other_name_key;  // SAN: other.example, signed by the CA
  std::string expired_cert, expired_key;        // SAN: localhost, expired
  std::string untrusted_cert, untrusted_key;    // SAN: localhost, signed by a CA nobody trusts
};

/// The PKI (created on first use; the directory is removed at exit).
const test_pki& pki();

}  // namespace corio::testing
