#include "support/tls_certs.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace corio::testing {
namespace {

void run(const std::string& command) {
  if (std::system((command + " >/dev/null 2>&1").c_str()) != 0) {
    throw std::runtime_error("test PKI: command failed: " + command);
  }
}

/// A shared PKI younger than this is reused (its certificates are valid for 2 days).
constexpr std::time_t shared_pki_max_age = 12 * 3600;

bool fresh(const std::string& dir) {
  struct stat st {};
  return ::stat((dir + "/ready").c_str(), &st) == 0 &&
         std::time(nullptr) - st.st_mtime < shared_pki_max_age;
}

std::string make_temp_dir(std::string prefix) {
  prefix += "XXXXXX";
  if (::mkdtemp(prefix.data()) == nullptr) throw std::runtime_error("test PKI: mkdtemp failed");
  return prefix;
}

struct pki_holder {
  test_pki p;
  bool owned = false;  // a private directory, removed at exit

  pki_holder() {
    // ctest runs every test in its own process: CORIO_TEST_PKI_DIR (set by
    // test/CMakeLists.txt) lets them share one PKI instead of making ~15 openssl calls each.
    const char* shared = std::getenv("CORIO_TEST_PKI_DIR");
    if (shared == nullptr || *shared == '\0') {
      owned = true;
      set_paths(generate(make_temp_dir("/tmp/corio-pki-")));
      return;
    }
    const std::string dir = shared;
    if (!fresh(dir)) {
      // Made beside the final place and renamed into it, so that concurrent processes
      // never see a half-made PKI; the loser of the rename uses the winner's.
      std::error_code ignored;
      std::filesystem::create_directories(std::filesystem::path(dir).parent_path(), ignored);
      std::string made = generate(make_temp_dir(dir + ".tmp-"));
      std::ofstream(made + "/ready") << "ok\n";
      if (!fresh(dir)) {
        std::string stale = dir + ".stale-" + std::to_string(::getpid());
        if (::rename(dir.c_str(), stale.c_str()) == 0) std::filesystem::remove_all(stale, ignored);
      }
      if (::rename(made.c_str(), dir.c_str()) != 0) std::filesystem::remove_all(made, ignored);
      if (!fresh(dir)) throw std::runtime_error("test PKI: cannot make " + dir);
    }
    set_paths(dir);
  }

  static std::string generate(const std::string& dir) {
    const std::string d = dir + "/";
    auto ca = [&](const std::string& name) {
      run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "
          "/CN=" +
          name + " -keyout " + d + name + ".key -out " + d + name + ".pem");
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
    // Expired: `-days -1` gives notAfter = notBefore - 1 day (OpenSSL 3 accepts it), so the
    // certificate is expired from the start; `-days 0` (expired a second later) is the
    // fallback. TlsPki.ExpiredCertificateReallyExpired_E4 checks the result.
    run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=expired "
        "-keyout " +
        d + "expired.key -out " + d + "expired.csr");
    run("sh -c \"printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > " + d + "expired.ext\"");
    run("sh -c \"openssl x509 -req -in " + d + "expired.csr -CA " + d +
        "corio-test-ca.pem -CAkey " + d + "corio-test-ca.key -CAcreateserial -out " + d +
        "expired.pem -extfile " + d + "expired.ext -days -1 || openssl x509 -req -in " + d +
        "expired.csr -CA " + d + "corio-test-ca.pem -CAkey " + d +
        "corio-test-ca.key -CAcreateserial -out " + d + "expired.pem -extfile " + d +
        "expired.ext -days 0\"");
    return dir;
  }

  void set_paths(const std::string& dir) {
    p.dir = dir;
    const std::string d = dir + "/";
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
    if (!owned) return;
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
