// libFuzzer: the chunked-body decoder never reads out of bounds, never returns more than the
// limit, and reports every malformed input as protocol_error (A10: hex overflow, cut data).
#include <cstdint>
#include <string_view>

#include "http/parser.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  constexpr std::size_t limit = 1 << 16;
  try {
    std::size_t consumed = 0;
    std::string body = corio::http::detail::decode_chunked(input, limit, consumed);
    if (body.size() > limit || consumed > input.size()) __builtin_trap();
  } catch (const corio::http::protocol_error&) {
  }
  return 0;
}
