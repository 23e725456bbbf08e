// An HTTP/1.1 hello-world server: `GET /` answers "Hello, World!".
// Usage: http_hello [--backend io_uring|epoll] [--port N]   (also built as corio_http_hello)
#include <corio/corio.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>

corio::task<corio::http::response> hello(corio::http::request& req) {
  if (req.path() != "/") co_return corio::http::response::text(404, "not found\n");
  co_return corio::http::response::text(200, "Hello, World!");
}

int main(int argc, char** argv) {
  corio::loop_options options;
  std::uint16_t port = 8080;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--backend") == 0) options.backend = corio::parse_backend(argv[i + 1]);
    if (std::strcmp(argv[i], "--port") == 0) port = static_cast<std::uint16_t>(std::atoi(argv[i + 1]));
  }
  corio::event_loop loop(options);
  auto listener = corio::tcp_listener::bind("127.0.0.1", port);
  corio::http::server server(hello);
  std::printf("listening on %s\n", listener.local_endpoint().to_string().c_str());
  std::fflush(stdout);
  loop.run(server.serve(listener));
}
