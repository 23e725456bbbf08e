#include "support/tls_certs.hpp"

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

namespace corio::testing {
namespace {

void run(const std::string& command) {
  if (std::system((command + " >/dev/null 2>&1").c_str()) != 0) {
    throw std::runtime_error("test PKI: command failed: " + command);
  }
}

struct pki_holder {
  test_pki p;
  pki_holder() {
    char tmpl[] = "/tmp/corio-pki-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("test PKI: mkdtemp failed");
    p.dir = tmpl;
    const std::string d = p.dir + "/";
    auto ca = [&](const std::string& name) {
      run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "
          "/CN=" + name + " -keyout " + d + name + ".key -out " + d + name + ".pem");
    };
    auto leaf = [&](const std::string& name, const std::string& issuer, const std::string& san,
                    const std::string& days_flag) {
      run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=" + name +
          " -keyout " + d + name + ".key -out " + d + name + ".csr");
      std::string ext = d + name + ".ext";
      run("sh -c \"printf 'subjectAltName=" + san + "\\n' > " + ext + "\"");
      run("openssl x509 -req -in " + d + name + ".csr -CA " + d + issuer + ".pem -CAkey " + d +
          issuer + ".key -CAcreateserial -out " + d + name + ".pem -extfile " + ext + " " +
          days_flag);
    };
    ca("corio-test-ca");
    ca("corio-rogue-ca");
    leaf("server", "corio-test-ca", "DNS:localhost,IP:127.0.0.1,IP:::1", "-days 2");
    leaf("client", "corio-test-ca", "DNS:corio-client", "-days 2");
    leaf("other", "corio-test-ca", "DNS:other.example", "-days 2");
    leaf("untrusted", "corio-rogue-ca", "DNS:localhost,IP:127.0.0.1", "-days 2");
    // Expired: valid for 1 day starting 3 days ago is not expressible with -days; use
    // -not_before/-not_after where available (OpenSSL 3), else a negative-duration fallback.
    run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=expired "
        "-keyout " + d + "expired.key -out " + d + "expired.csr");
    run("sh -c \"printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > " + d + "expired.ext\"");
    run("openssl ca -batch -selfsign -help >/dev/null 2>&1 || true");
    run("sh -c \"openssl x509 -req -in " + d + "expired.csr -CA " + d + "corio-test-ca.pem -CAkey " +
        d + "corio-test-ca.key -CAcreateserial -out " + d + "expired.pem -extfile " + d +
        "expired.ext -days -1 || openssl x509 -req -in " + d + "expired.csr -CA " + d +
        "corio-test-ca.pem -CAkey " + d + "corio-test-ca.key -CAcreateserial -out " + d +
        "expired.pem -extfile " + d + "expired.ext -days 0\"");
    p.ca_cert = d + "corio-test-ca.pem";
    p.server_cert = d + "server.pem";
    p.server_key = d + "server.key";
    p.client_cert = d + "client.pem";
    p.client_key = d + "client.key";
    p.other_name_cert = d + "other.pem";
    p.other_name_key = d + "other.key";
    p.expired_cert = d + "expired.pem";
    p.expired_key = d + "expired.key";
    p.untrusted_cert = d + "untrusted.pem";
    p.untrusted_key = d + "untrusted.key";
  }
  ~pki_holder() {
    std::error_code ignored;
    std::filesystem::remove_all(p.dir, ignored);
  }
};

}  // namespace

const test_pki& pki() {
  static pki_holder holder;
  return holder.p;
}

}  // namespace corio::testing
