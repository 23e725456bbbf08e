// corio/tls.hpp - TLS (OpenSSL) contexts and streams.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "corio/stream.hpp"
#include "corio/task.hpp"
#include "corio/tcp.hpp"

typedef struct ssl_ctx_st SSL_CTX;  // OpenSSL's type, without including OpenSSL here

namespace corio {

/// Which side of the handshake a context is for.
enum class tls_role { client, server };

/// Settings shared by TLS streams: certificates, trust, verification, SNI, ALPN.
///
/// Defaults (S55, build-and-packaging.md #12): TLS 1.2 minimum, compression and renegotiation
/// off. A client context verifies the peer's chain against the system trust store and checks
/// the host name given to start_tls/connect (also sent as SNI). A server context does not
/// request client certificates. A truncated stream (peer closes without close_notify) is
/// recorded in error() as errc::tls_truncated (D10) unless set_truncation_is_error(false).
class tls_context {
 public:
  /// A context with the defaults above for `role`. Throws tls_error if OpenSSL fails.
  explicit tls_context(tls_role role);
  /// Takes over `other`'s OpenSSL context; `other` becomes empty: using an empty context
  /// (any setter or getter but native_handle(), or giving it to a stream) throws
  /// std::logic_error until a context is assigned to it.
  tls_context(tls_context&&) noexcept;
  /// Releases this context, then takes over `other`'s OpenSSL context.
  tls_context& operator=(tls_context&&) noexcept;
  /// Releases the OpenSSL context (streams created from it keep their own reference, which
  /// also keeps its SNI table and ALPN list).
  ~tls_context();

  /// Loads a PEM certificate chain (leaf first). Throws tls_error naming the file.
  tls_context& use_certificate_chain_file(const std::string& path);
  /// Loads a PEM private key and checks that it matches the certificate. Throws tls_error.
  tls_context& use_private_key_file(const std::string& path);
  /// As use_certificate_chain_file, from memory.
  tls_context& use_certificate_chain_pem(std::string_view pem);
  /// As use_private_key_file, from memory.
  tls_context& use_private_key_pem(std::string_view pem);
  /// Trusts the CA certificates in a PEM file.
  tls_context& load_verify_file(const std::string& path);
  /// Trusts the CA certificates in a hashed directory (c_rehash layout).
  tls_context& load_verify_dir(const std::string& path);
  /// Trusts the system's default CA store (done by default for clients).
  tls_context& use_default_verify_paths();
  /// Client: verify the server's chain (default true). Off, no name is checked either
  /// (check_hostname() is false); on again, names are checked again unless
  /// set_check_hostname(false) was called. Server: see require_client_certificate.
  tls_context& set_verify_peer(bool enabled);
  /// Client: check the server's name against the certificate (default true). Turning it on
  /// turns peer verification on too (a name check means nothing without it), as Python does.
  tls_context& set_check_hostname(bool enabled);
  /// Server: ask for a client certificate and fail the handshake without a valid one.
  tls_context& require_client_certificate(bool required = true);
  /// Offers (client, in preference order) or accepts (server) ALPN protocols. The server
  /// picks the first protocol of its own list that the client offers; with no overlap the
  /// handshake goes on without ALPN and alpn_protocol() is "".
  tls_context& set_alpn_protocols(std::vector<std::string> protocols);
  /// Server: use `context` for clients that ask for `server_name` through SNI (compared
  /// without regard to case or a trailing dot, as DNS names are). Such a connection takes its
  /// certificate, key and ALPN protocols from `context`; client certificate verification
  /// stays as this context sets it. This context keeps a reference to `context`'s OpenSSL
  /// context, so `context` may be destroyed first; two contexts naming each other are never
  /// freed.
  tls_context& add_server_name(std::string server_name, tls_context& context);
  /// OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's defaults).
  tls_context& set_ciphers(const std::string& list);
  /// Whether a missing close_notify is recorded as errc::tls_truncated (default true, D10).
  tls_context& set_truncation_is_error(bool enabled);

  /// Whether this is a client or a server context.
  tls_role role() const;
  /// True if start_tls/connect check the peer's name against its certificate: a client
  /// context that verifies its peer and whose name check is on.
  bool check_hostname() const;
  /// True if a missing close_notify is recorded as errc::tls_truncated (D10).
  bool truncation_is_error() const;
  /// The OpenSSL context, for settings corio does not wrap; nullptr for an empty context.
  SSL_CTX* native_handle() const noexcept;

  /// @cond INTERNAL
  struct impl;
  /// @endcond
 private:
  impl& checked(const char* what) const;  // throws std::logic_error on an empty context
  std::unique_ptr<impl> impl_;
};

/// A stream whose bytes are protected by TLS; every stream rule holds over it (S52-S55).
/// Reads and writes may be issued before the handshake finishes: they wait for it (S54).
/// close() sends close_notify and does not wait for the peer's.
class tls_stream : public stream {
 public:
  /// An empty stream; assign one from connect, accept or start_tls before use.
  tls_stream() noexcept = default;

  /// Connects and performs the client handshake (SNI and verification against `host`).
  /// Failure: stream_closed_error from the TCP connect (S47), or tls_error (S53);
  /// timeout_error once options.timeout, one deadline for all of it, expired (S51).
  [[nodiscard]] static task<tls_stream> connect(std::string_view host, std::uint16_t port,
                                                tls_context& context, connect_options options = {});

  /// Wraps an accepted connection as the server side; the handshake starts now and the
  /// stream is returned at once (await wait_for_handshake() for peer details) (S54).
  static tls_stream accept(tcp_stream&& connection, tls_context& context);

  /// Completes when the handshake has completed (at once if it already has); fails with the
  /// raw tls_error (or the OS error) if it failed (S53). One waiter at a time: a second
  /// concurrent call throws std::logic_error (S54).
  [[nodiscard]] task<void> wait_for_handshake();

  /// The ALPN protocol the peers agreed on, or "" (after the handshake).
  std::string alpn_protocol() const;
  /// The negotiated protocol version ("TLSv1.3"…), or "" before the handshake.
  std::string protocol_version() const;
  /// The peer certificate's subject as one line, or "" if none.
  std::string peer_certificate_subject() const;

  /// @cond INTERNAL
  explicit tls_stream(stream&& plain) noexcept : stream(std::move(plain)) {}
  /// @endcond
};

/// The category of TLS error codes (OpenSSL reason codes) used by error() and tls_error.
const std::error_category& tls_category() noexcept;
/// The category of certificate verification results (X509_V_ERR_*).
const std::error_category& x509_category() noexcept;

}  // namespace corio
