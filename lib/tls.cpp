// tls_stream: TLS over a tcp_stream, handshake through the stream engine (lib/stream_tls.cpp).
#include "corio/tls.hpp"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <chrono>
#include <memory>
#include <stdexcept>

#include "connect_within.hpp"
#include "corio/timeout.hpp"
#include "stream_core.hpp"

namespace corio {
namespace {

task<tls_stream> finish_handshake(tls_stream s, task<void> handshake) {
  co_await std::move(handshake);
  co_return std::move(s);
}

/// What a client handshake needs of its tls_context, taken when connect() is called: the
/// context may be destroyed while the TCP connection is still being made (tls.hpp), so it
/// holds its own reference to the OpenSSL context.
struct client_settings {
  std::shared_ptr<SSL_CTX> context;
  bool check_hostname;
  bool truncation_is_error;

  explicit client_settings(tls_context& c)
      : context(up_ref(c.native_handle()), &SSL_CTX_free),
        check_hostname(c.check_hostname()),
        truncation_is_error(c.truncation_is_error()) {}

  static SSL_CTX* up_ref(SSL_CTX* ctx) {
    if (SSL_CTX_up_ref(ctx) != 1) {
      throw tls_error("tls_stream::connect: cannot reference the context");
    }
    return ctx;
  }
};

/// A moved-from context has nothing to give a stream: say so where it was given.
void require_context(const tls_context& context, const char* who) {
  if (context.native_handle() == nullptr) {
    throw std::logic_error(std::string(who) + ": the tls_context is empty (it was moved from)");
  }
}

task<tls_stream> connect_then_handshake(std::string host, std::uint16_t port,
                                        client_settings settings, connect_options options) {
  tcp_stream plain = co_await tcp_stream::connect(host, port, options);
  plain.core().start_tls(std::make_unique<detail::tls_session>(
      settings.context.get(), false, host, settings.check_hostname, settings.truncation_is_error));
  tls_stream secured(std::move(plain));
  co_await secured.core().wait_for_handshake();
  co_return secured;
}

}  // namespace

task<tls_stream> tcp_stream::start_tls(tls_context& context, std::string_view server_hostname) && {
  if (core_ == nullptr) throw std::logic_error("start_tls: the stream is empty");
  require_context(context, "start_tls");
  bool server = context.role() == tls_role::server;
  if (!server && context.check_hostname() && server_hostname.empty()) {
    throw std::invalid_argument(
        "start_tls: the context checks host names, so server_hostname is required (S55)");
  }
  core_->start_tls(std::make_unique<detail::tls_session>(context.native_handle(), server,
                                                         server_hostname, context.check_hostname(),
                                                         context.truncation_is_error()));
  tls_stream secured(std::move(*this));
  task<void> handshake = secured.core().wait_for_handshake();
  return finish_handshake(std::move(secured), std::move(handshake));
}

task<tls_stream> tls_stream::connect(std::string_view host, std::uint16_t port,
                                     tls_context& context, connect_options options) {
  require_context(context, "tls_stream::connect");
  if (context.role() != tls_role::client) {
    throw std::invalid_argument("tls_stream::connect: needs a client tls_context");
  }
  // S51: one deadline covers resolution, connection and the handshake, so it is put around
  // the whole; on expiry the half-made stream is destroyed, which closes its socket.
  const std::chrono::nanoseconds limit = options.timeout;
  options.timeout = std::chrono::nanoseconds{0};
  client_settings settings(context);
  if (limit.count() > 0) {
    return start(detail::connect_within(
        limit, connect_then_handshake(std::string(host), port, std::move(settings), options),
        "tls_stream::connect to " + endpoint{std::string(host), port}.to_string() +
            ": not connected and handshaken"));
  }
  return start(connect_then_handshake(std::string(host), port, std::move(settings), options));
}

tls_stream tls_stream::accept(tcp_stream&& connection, tls_context& context) {
  require_context(context, "tls_stream::accept");
  if (context.role() != tls_role::server) {
    throw std::invalid_argument("tls_stream::accept: needs a server tls_context");
  }
  connection.core().start_tls(std::make_unique<detail::tls_session>(
      context.native_handle(), true, std::string_view{}, false, context.truncation_is_error()));
  return tls_stream(std::move(connection));
}

task<void> tls_stream::wait_for_handshake() {
  if (core_ == nullptr) throw std::logic_error("wait_for_handshake: the stream is empty");
  return core_->wait_for_handshake();
}

std::string tls_stream::alpn_protocol() const {
  if (core_ == nullptr || core_->tls() == nullptr) return {};
  const unsigned char* data = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(core_->tls()->native(), &data, &len);
  return data ? std::string(reinterpret_cast<const char*>(data), len) : std::string();
}

std::string tls_stream::protocol_version() const {
  if (core_ == nullptr || core_->tls() == nullptr || !core_->tls()->handshake_done()) return {};
  return SSL_get_version(core_->tls()->native());
}

std::string tls_stream::peer_certificate_subject() const {
  if (core_ == nullptr || core_->tls() == nullptr) return {};
  X509* cert = SSL_get1_peer_certificate(core_->tls()->native());
  if (cert == nullptr) return {};
  char* line = X509_NAME_oneline(X509_get_subject_name(cert), nullptr, 0);
  std::string out = line ? line : "";
  OPENSSL_free(line);
  X509_free(cert);
  return out;
}

}  // namespace corio
