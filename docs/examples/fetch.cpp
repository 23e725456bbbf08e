// The seed's client: fetch a page, read the head until "\r\n\r\n", read Content-Length bytes,
// save the body. Usage: fetch URL [OUTPUT_FILE]
#include <corio/corio.hpp>
#include <cstdio>
#include <fstream>

corio::task<int> fetch(std::string url, std::string output) {
  corio::http::client client;
  corio::http::client_response response = co_await client.get(url);
  std::printf("%d %s, %zu bytes\n", response.status, response.reason.c_str(), response.body.size());
  if (!output.empty()) std::ofstream(output, std::ios::binary) << response.body;
  co_return response.status < 400 ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc < 2) return std::fprintf(stderr, "usage: fetch URL [OUTPUT_FILE]\n"), 2;
  corio::event_loop loop;
  try {
    return loop.run(fetch(argv[1], argc > 2 ? argv[2] : ""));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fetch: %s\n", e.what());
    return 1;
  }
}
