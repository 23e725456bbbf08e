#include "regex_matcher.hpp"

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include <cstdint>
#include <cstdlib>
#include <new>

#include "corio/errors.hpp"

namespace corio::detail {

regex_matcher::regex_matcher(std::string_view pattern) : pattern_(pattern) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  // Byte-wise, as Tornado's bytes patterns (S20): (*UTF) or (*UCP) in a pattern is refused.
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                    PCRE2_NEVER_UTF | PCRE2_NEVER_UCP, &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR reason[256];
    pcre2_get_error_message(error_code, reason, sizeof reason);
    throw regex_error("read_until_regex: pattern \"" + std::string(pattern) +
                      "\" does not compile at offset " + std::to_string(error_offset) + ": " +
                      reinterpret_cast<const char*>(reason));
  }
  // JIT where the platform has it; the interpreter is the fallback, equally correct.
  // CORIO_PCRE2_NO_JIT=1 turns the JIT off: valgrind cannot see into JIT code and reports
  // its word-at-a-time reads as uninitialised (cmake/valgrind.sh sets it).
  static const bool no_jit = [] {
    const char* v = std::getenv("CORIO_PCRE2_NO_JIT");
    return v != nullptr && *v != '\0' && *v != '0';
  }();
  if (!no_jit) pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = code;
  match_data_ = pcre2_match_data_create_from_pattern(code, nullptr);
  if (match_data_ == nullptr) {
    pcre2_code_free(code);
    throw std::bad_alloc();
  }
}

regex_matcher::~regex_matcher() {
  pcre2_match_data_free(static_cast<pcre2_match_data*>(match_data_));
  pcre2_code_free(static_cast<pcre2_code*>(code_));
}

std::optional<std::size_t> regex_matcher::match_end(std::string_view subject) const {
  auto* md = static_cast<pcre2_match_data*>(match_data_);
  auto match = [&](std::uint32_t options) {
    return pcre2_match(static_cast<pcre2_code*>(code_),
                       reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0, options, md,
                       nullptr);
  };
  int rc = match(0);
  // The JIT's default stack is 32 KiB of machine stack, which a backtracking pattern over a
  // few KiB exhausts; the interpreter keeps its backtracking on the heap (20 MB limit).
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT) rc = match(PCRE2_NO_JIT);
  if (rc >= 0) return pcre2_get_ovector_pointer(md)[1];
  if (rc == PCRE2_ERROR_NOMATCH) return std::nullopt;
  // Anything else (the match, depth or heap limit) is not "no match": waiting for more data
  // would hang, or end in a false "not matched within max_bytes".
  PCRE2_UCHAR reason[256];
  pcre2_get_error_message(rc, reason, sizeof reason);
  throw regex_error("read_until_regex: matching pattern \"" + pattern_ + "\" against " +
                    std::to_string(subject.size()) +
                    " buffered bytes failed: " + reinterpret_cast<const char*>(reason));
}

}  // namespace corio::detail
