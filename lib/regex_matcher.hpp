// lib/regex_matcher.hpp - PCRE2 search for read_until_regex (never std::regex: §17.5.3).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace corio::detail {

/// A compiled pattern. Matching is byte-wise (no UTF), the subject is the unconsumed bytes
/// alone, so ^ anchors at the first unconsumed byte (S20, D2).
class regex_matcher {
 public:
  /// Compiles `pattern`; throws regex_error naming the pattern, the offset and the reason.
  explicit regex_matcher(std::string_view pattern);
  ~regex_matcher();
  regex_matcher(const regex_matcher&) = delete;
  regex_matcher& operator=(const regex_matcher&) = delete;

  const std::string& pattern() const noexcept { return pattern_; }
  /// End offset of the leftmost match in `subject`, if any. Throws regex_error if PCRE2
  /// cannot decide (its match, depth or heap limit): that is not "no match".
  std::optional<std::size_t> match_end(std::string_view subject) const;

 private:
  std::string pattern_;
  void* code_ = nullptr;
  void* match_data_ = nullptr;
};

}  // namespace corio::detail
