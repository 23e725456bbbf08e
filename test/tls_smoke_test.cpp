#include <gtest/gtest.h>

#include "corio/corio.hpp"
#include "support/backends.hpp"
#include "support/tls_certs.hpp"

using namespace corio;

namespace {
class TlsSmoke : public corio::testing::backend_test {};

TEST_P(TlsSmoke, HandshakeAndEcho) {
  const auto& pki = corio::testing::pki();
  run([&]() -> task<void> {
    tls_context server_ctx(tls_role::server);
    server_ctx.use_certificate_chain_file(pki.server_cert).use_private_key_file(pki.server_key);
    tls_context client_ctx(tls_role::client);
    client_ctx.load_verify_file(pki.ca_cert);
    auto listener = tcp_listener::bind("127.0.0.1", 0);
    auto client_task = tls_stream::connect("localhost", listener.port(), client_ctx);
    tls_stream server = tls_stream::accept(co_await listener.accept(), server_ctx);
    tls_stream client = co_await std::move(client_task);
    co_await server.wait_for_handshake();
    client.write("hello over tls\n");
    EXPECT_EQ(co_await server.read_until("\n"), "hello over tls\n");
    server.write("back\n");
    EXPECT_EQ(co_await client.read_until("\n"), "back\n");
    EXPECT_FALSE(client.protocol_version().empty());
    client.close();
    EXPECT_EQ(co_await server.read_until_close(), "");
    EXPECT_FALSE(server.error()) << server.error().message();
  }());
}

TEST_P(TlsSmoke, UntrustedServerFailsWithVerifyReason) {
  const auto& pki = corio::testing::pki();
  run([&]() -> task<void> {
    tls_context server_ctx(tls_role::server);
    server_ctx.use_certificate_chain_file(pki.untrusted_cert).use_private_key_file(pki.untrusted_key);
    tls_context client_ctx(tls_role::client);
    client_ctx.load_verify_file(pki.ca_cert);
    auto listener = tcp_listener::bind("127.0.0.1", 0);
    auto client_task = tls_stream::connect("localhost", listener.port(), client_ctx);
    tls_stream server = tls_stream::accept(co_await listener.accept(), server_ctx);
    try {
      co_await std::move(client_task);
      ADD_FAILURE() << "handshake should fail";
    } catch (const tls_error& e) {
      EXPECT_NE(std::string(e.what()).find("certificate verification failed"), std::string::npos) << e.what();
    }
    EXPECT_THROW(co_await server.wait_for_handshake(), corio::error);
  }());
}

CORIO_INSTANTIATE_BACKENDS(TlsSmoke);
}  // namespace
