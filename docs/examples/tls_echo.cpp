// A TLS line-echo server and a client that talks to it, in one program (docs/tls.md).
//
//   tls_echo CERT KEY CA [PORT]
//
// CERT/KEY: the server's PEM certificate chain and private key; the certificate must name
// "localhost". CA: the PEM CA certificate the client trusts. PORT: 0 (default) picks a free
// one. The server echoes lines; the client sends three, prints the echoes and closes.
// Make a throwaway PKI with the openssl command, for example:
//   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1
//     -subj /CN=localhost -addext subjectAltName=DNS:localhost -keyout key.pem -out cert.pem
// (one command line)
//   tls_echo cert.pem key.pem cert.pem
#include <corio/corio.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>

// One connection: the handshake runs in the background; reads wait for it (S54).
corio::task<void> serve(corio::tls_stream client) {
  try {
    co_await client.wait_for_handshake();  // optional: to see handshake errors separately
    for (;;) {
      std::string line = co_await client.read_until("\n", 64 * 1024);
      client.write(std::move(line));
    }
  } catch (const corio::tls_error& e) {  // bad certificate, plaintext client, wrong version…
    std::fprintf(stderr, "server: handshake failed: %s\n", e.what());
  } catch (const corio::stream_closed_error&) {  // the client left (error() says how)
  }
}

corio::task<void> accept_loop(corio::tcp_listener& listener, corio::tls_context& context) {
  for (;;) {
    corio::tcp_stream connection = co_await listener.accept();
    corio::event_loop::current().spawn(
        serve(corio::tls_stream::accept(std::move(connection), context)));
  }
}

corio::task<int> client(std::uint16_t port, corio::tls_context& context) {
  // Verifies the chain against `context`'s CAs and the name "localhost" (also sent as SNI).
  corio::tls_stream tls = co_await corio::tls_stream::connect("localhost", port, context);
  std::printf("client: connected with %s\n", tls.protocol_version().c_str());
  for (const char* line : {"hello\n", "over\n", "TLS\n"}) {
    tls.write(line);
    std::string echo = co_await tls.read_until("\n");
    std::printf("client: echoed %s", echo.c_str());
  }
  tls.close();  // sends close_notify; the server sees a clean end (error() empty)
  co_return 0;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s CERT KEY CA [PORT]\n", argv[0]);
    return 2;
  }
  try {
    corio::tls_context server_context(corio::tls_role::server);
    server_context.use_certificate_chain_file(argv[1]).use_private_key_file(argv[2]);
    corio::tls_context client_context(corio::tls_role::client);
    client_context.load_verify_file(argv[3]);

    auto port = static_cast<std::uint16_t>(argc > 4 ? std::atoi(argv[4]) : 0);
    auto listener = corio::tcp_listener::bind("127.0.0.1", port);
    std::printf("server: listening on %s\n", listener.local_endpoint().to_string().c_str());

    // Declared last, so destroyed first: destroying the loop destroys the still-suspended
    // accept loop and connections, which use the listener and the contexts.
    corio::event_loop loop;
    loop.spawn(accept_loop(listener, server_context));
    return loop.run(client(listener.port(), client_context));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tls_echo: %s\n", e.what());
    return 1;
  }
}
