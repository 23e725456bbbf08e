// libFuzzer: the HTTP/1.1 request parser and body framing never crash, and either accept a
// head or throw protocol_error with an HTTP status (A10).
#include <cstdint>
#include <string_view>

#include "http/parser.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  try {
    auto head = corio::http::detail::parse_request_head(input);
    auto framing = corio::http::detail::request_framing(head.headers);
    (void)framing;
  } catch (const corio::http::protocol_error& e) {
    if (e.status() < 400 || e.status() > 599) __builtin_trap();
  }
  try {
    auto head = corio::http::detail::parse_response_head(input);
    (void)corio::http::detail::response_framing(head.headers, head.status, "GET");
  } catch (const corio::http::protocol_error&) {
  }
  return 0;
}
