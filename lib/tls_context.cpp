// tls_context: OpenSSL SSL_CTX with corio's defaults (S55; build-and-packaging.md #12).
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <map>
#include <stdexcept>
#include <string>
#include <string_view>

#include "corio/tls.hpp"
#include "tls_session.hpp"

namespace corio {
namespace {

std::string openssl_errors() {
  std::string text = detail::drain_openssl_errors();
  return text.empty() ? "unknown OpenSSL error" : text;
}

/// A DNS name as the SNI table's key: names are case-insensitive (RFC 4343) and a trailing
/// dot (an absolute name) names the same host.
std::string dns_name_key(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  std::string key(name);
  for (char& c : key) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return key;
}

[[noreturn]] void fail(const std::string& what) {
  throw tls_error("tls_context: " + what + ": " + openssl_errors());
}

class tls_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "corio.tls"; }
  std::string message(int value) const override {
    const char* reason = ERR_reason_error_string(ERR_PACK(ERR_LIB_SSL, 0, value));
    return reason ? reason : "TLS error " + std::to_string(value);
  }
};

class x509_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "corio.x509"; }
  std::string message(int value) const override { return X509_verify_cert_error_string(value); }
};

/// A BIO over a string, for PEM from memory.
struct memory_bio {
  explicit memory_bio(std::string_view pem)
      : bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()))) {}
  ~memory_bio() { BIO_free(bio); }
  BIO* bio;
};

}  // namespace

const std::error_category& tls_category() noexcept {
  static const tls_category_impl category;
  return category;
}

const std::error_category& x509_category() noexcept {
  static const x509_category_impl category;
  return category;
}

namespace {

/// What the server callbacks read: owned by the SSL_CTX (ex_data), not by the tls_context, so
/// that it lives as long as any connection made from the context (each SSL holds a reference
/// to its SSL_CTX), after the tls_context is gone (tls.hpp).
struct callback_state {
  std::string alpn_wire;                         // length-prefixed protocol names
  std::map<std::string, SSL_CTX*> server_names;  // each holds a reference; nullptr: this one

  callback_state() = default;
  callback_state(const callback_state&) = delete;
  callback_state& operator=(const callback_state&) = delete;
  ~callback_state() {
    for (auto& entry : server_names) SSL_CTX_free(entry.second);  // nullptr: nothing to free
  }

  static void free(void*, void* state, CRYPTO_EX_DATA*, int, long, void*) {
    delete static_cast<callback_state*>(state);
  }
  static int index() {
    static const int value = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, &free);
    return value;
  }

  static int on_server_name(SSL* ssl, int*, void* arg) {
    auto* self = static_cast<callback_state*>(arg);
    const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name == nullptr) return SSL_TLSEXT_ERR_OK;
    auto it = self->server_names.find(dns_name_key(name));
    if (it != self->server_names.end() && it->second != nullptr) {
      SSL_set_SSL_CTX(ssl, it->second);  // the SSL takes a reference of its own
    }
    return SSL_TLSEXT_ERR_OK;
  }

  static int on_alpn(SSL*, const unsigned char** out, unsigned char* outlen,
                     const unsigned char* in, unsigned int inlen, void* arg) {
    auto* self = static_cast<callback_state*>(arg);
    unsigned char* chosen = nullptr;
    if (SSL_select_next_proto(
            &chosen, outlen, reinterpret_cast<const unsigned char*>(self->alpn_wire.data()),
            static_cast<unsigned>(self->alpn_wire.size()), in, inlen) != OPENSSL_NPN_NEGOTIATED) {
      return SSL_TLSEXT_ERR_NOACK;
    }
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
  }
};

}  // namespace

struct tls_context::impl {
  SSL_CTX* ctx = nullptr;
  callback_state* state = nullptr;  // owned by ctx (ex_data)
  tls_role role = tls_role::client;
  bool check_hostname = true;
  bool truncation_is_error = true;

  ~impl() { SSL_CTX_free(ctx); }  // connections made from it keep their own reference
};

tls_context::tls_context(tls_role role) : impl_(std::make_unique<impl>()) {
  impl_->role = role;
  impl_->ctx = SSL_CTX_new(role == tls_role::client ? TLS_client_method() : TLS_server_method());
  if (impl_->ctx == nullptr) fail("SSL_CTX_new failed");
  SSL_CTX* ctx = impl_->ctx;
  auto state = std::make_unique<callback_state>();
  if (callback_state::index() < 0 ||
      SSL_CTX_set_ex_data(ctx, callback_state::index(), state.get()) != 1) {
    fail("cannot attach the callback state");
  }
  impl_->state = state.release();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);  // E15
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (role == tls_role::client) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) fail("cannot load the system CA store");
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    SSL_CTX_set_tlsext_servername_callback(ctx, &callback_state::on_server_name);
    SSL_CTX_set_tlsext_servername_arg(ctx, impl_->state);
  }
}

tls_context::tls_context(tls_context&&) noexcept = default;
tls_context& tls_context::operator=(tls_context&&) noexcept = default;
tls_context::~tls_context() = default;

tls_context& tls_context::use_certificate_chain_file(const std::string& path) {
  impl& self = checked("use_certificate_chain_file");
  if (SSL_CTX_use_certificate_chain_file(self.ctx, path.c_str()) != 1) {
    fail("cannot load the certificate chain from \"" + path + "\"");
  }
  return *this;
}

tls_context& tls_context::use_private_key_file(const std::string& path) {
  impl& self = checked("use_private_key_file");
  if (SSL_CTX_use_PrivateKey_file(self.ctx, path.c_str(), SSL_FILETYPE_PEM) != 1) {
    fail("cannot load the private key from \"" + path + "\"");
  }
  if (SSL_CTX_check_private_key(self.ctx) != 1) {
    fail("the private key in \"" + path + "\" does not match the certificate");
  }
  return *this;
}

tls_context& tls_context::use_certificate_chain_pem(std::string_view pem) {
  impl& self = checked("use_certificate_chain_pem");
  memory_bio in(pem);
  X509* leaf = PEM_read_bio_X509_AUX(in.bio, nullptr, nullptr, nullptr);
  if (leaf == nullptr || SSL_CTX_use_certificate(self.ctx, leaf) != 1) {
    X509_free(leaf);
    fail("cannot use the PEM certificate");
  }
  X509_free(leaf);
  SSL_CTX_clear_chain_certs(self.ctx);
  while (X509* ca = PEM_read_bio_X509(in.bio, nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add0_chain_cert(self.ctx, ca) != 1) {
      X509_free(ca);
      fail("cannot add a chain certificate");
    }
  }
  // The loop ends on "no start line" once the text holds no further certificate; any other
  // error is a malformed one, which use_certificate_chain_file refuses too (a chain silently
  // cut short would fail every client's verification instead).
  const unsigned long last = ERR_peek_last_error();
  if (ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE) {
    ERR_clear_error();
  } else if (last != 0) {
    fail("cannot read a chain certificate of the PEM text");
  }
  return *this;
}

tls_context& tls_context::use_private_key_pem(std::string_view pem) {
  impl& self = checked("use_private_key_pem");
  memory_bio in(pem);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(in.bio, nullptr, nullptr, nullptr);
  if (key == nullptr || SSL_CTX_use_PrivateKey(self.ctx, key) != 1) {
    EVP_PKEY_free(key);
    fail("cannot use the PEM private key");
  }
  EVP_PKEY_free(key);
  if (SSL_CTX_check_private_key(self.ctx) != 1) {
    fail("the private key does not match the certificate");
  }
  return *this;
}

tls_context& tls_context::load_verify_file(const std::string& path) {
  impl& self = checked("load_verify_file");
  if (SSL_CTX_load_verify_locations(self.ctx, path.c_str(), nullptr) != 1) {
    fail("cannot load CA certificates from \"" + path + "\"");
  }
  return *this;
}

tls_context& tls_context::load_verify_dir(const std::string& path) {
  impl& self = checked("load_verify_dir");
  if (SSL_CTX_load_verify_locations(self.ctx, nullptr, path.c_str()) != 1) {
    fail("cannot use the CA directory \"" + path + "\"");
  }
  return *this;
}

tls_context& tls_context::use_default_verify_paths() {
  impl& self = checked("use_default_verify_paths");
  if (SSL_CTX_set_default_verify_paths(self.ctx) != 1) fail("cannot load the system CA store");
  return *this;
}

// Host name checks and peer verification, as Python's ssl does: a name check means nothing
// without verification, so turning the check on turns verification on, and check_hostname()
// is false while verification is off. Unlike Python, verification turned off and on again
// checks names again unless set_check_hostname(false) was called.
tls_context& tls_context::set_verify_peer(bool enabled) {
  impl& self = checked("set_verify_peer");
  SSL_CTX_set_verify(self.ctx, enabled ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                     SSL_CTX_get_verify_callback(self.ctx));
  return *this;
}

tls_context& tls_context::set_check_hostname(bool enabled) {
  impl& self = checked("set_check_hostname");
  self.check_hostname = enabled;
  if (enabled && self.role == tls_role::client &&
      (SSL_CTX_get_verify_mode(self.ctx) & SSL_VERIFY_PEER) == 0) {
    set_verify_peer(true);
  }
  return *this;
}

tls_context& tls_context::require_client_certificate(bool required) {
  impl& self = checked("require_client_certificate");
  SSL_CTX_set_verify(self.ctx,
                     required ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_NONE,
                     nullptr);
  return *this;
}

tls_context& tls_context::set_alpn_protocols(std::vector<std::string> protocols) {
  impl& self = checked("set_alpn_protocols");
  std::string wire;
  for (const std::string& p : protocols) {
    if (p.empty() || p.size() > 255) {
      throw std::invalid_argument("tls_context::set_alpn_protocols: protocol name \"" + p +
                                  "\" must be 1..255 bytes");
    }
    wire += static_cast<char>(p.size());
    wire += p;
  }
  self.state->alpn_wire = std::move(wire);
  if (self.role == tls_role::client) {
    if (SSL_CTX_set_alpn_protos(
            self.ctx, reinterpret_cast<const unsigned char*>(self.state->alpn_wire.data()),
            static_cast<unsigned>(self.state->alpn_wire.size())) != 0) {
      fail("cannot set ALPN protocols");
    }
  } else {
    SSL_CTX_set_alpn_select_cb(self.ctx, &callback_state::on_alpn, self.state);
  }
  return *this;
}

tls_context& tls_context::add_server_name(std::string server_name, tls_context& context) {
  impl& self = checked("add_server_name");
  if (self.role != tls_role::server || context.role() != tls_role::server) {
    throw std::logic_error("tls_context::add_server_name: both contexts must be server contexts");
  }
  // A reference of its own, so that the named context may be destroyed first (tls.hpp); none
  // for this context itself (nullptr), which would never be freed.
  SSL_CTX* named = context.native_handle();
  if (named == self.ctx) {
    named = nullptr;
  } else if (SSL_CTX_up_ref(named) != 1) {
    fail("cannot keep a reference to the named context");
  }
  SSL_CTX*& entry = self.state->server_names[dns_name_key(server_name)];
  SSL_CTX_free(entry);
  entry = named;
  return *this;
}

tls_context& tls_context::set_ciphers(const std::string& list) {
  impl& self = checked("set_ciphers");
  if (SSL_CTX_set_cipher_list(self.ctx, list.c_str()) != 1) {
    fail("invalid cipher list \"" + list + "\"");
  }
  return *this;
}

tls_context& tls_context::set_truncation_is_error(bool enabled) {
  impl& self = checked("set_truncation_is_error");
  self.truncation_is_error = enabled;
  return *this;
}

tls_role tls_context::role() const { return checked("role").role; }
bool tls_context::check_hostname() const {
  impl& self = checked("check_hostname");
  // Only a client that verifies its peer checks names (a server context never does).
  return self.role == tls_role::client && self.check_hostname &&
         (SSL_CTX_get_verify_mode(self.ctx) & SSL_VERIFY_PEER) != 0;
}
bool tls_context::truncation_is_error() const {
  return checked("truncation_is_error").truncation_is_error;
}
SSL_CTX* tls_context::native_handle() const noexcept { return impl_ ? impl_->ctx : nullptr; }

tls_context::impl& tls_context::checked(const char* what) const {
  if (!impl_) {
    throw std::logic_error(std::string("tls_context::") + what +
                           ": the context is empty (it was moved from)");
  }
  return *impl_;
}

}  // namespace corio
