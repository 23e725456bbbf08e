// test/support/stream_model.hpp - the reference model of the stream's read rules
// (stream-semantics.md S8-S27, D1, D9), shared by the randomized equivalence test and the
// stream_model fuzz target.
//
// The model is the bytes the application has not read yet plus the rules; every prediction
// is chunking-independent (partial reads give a range, see prediction::prefix). The regex
// patterns are ones whose first match never changes as more data arrives (S18), each with a
// hand-written matcher that the equivalence test checks against std::regex.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

namespace corio::testing {

// ------------------------------------------------------------------ reference matchers

// Regex patterns whose first match can never change once found (S18): for every prefix of
// the data, the leftmost match of the prefix is either absent or the leftmost match of the
// whole data. StreamEquivalenceModel.MatchersAgreeWithStdRegexAndArePrefixStable
// (stream_equivalence_test.cpp) checks both this property and the matchers themselves.
struct pattern_spec {
  const char* pattern;
  std::optional<std::size_t> (*match_end)(std::string_view);
};

inline std::optional<std::size_t> end_crlf_or_lf(std::string_view s) {  // \r?\n
  std::size_t i = s.find('\n');
  if (i == std::string_view::npos) return std::nullopt;
  return i + 1;
}

inline std::optional<std::size_t> end_a_plus_x(std::string_view s) {  // a+x
  for (std::size_t i = 1; i < s.size(); ++i) {
    if (s[i] == 'x' && s[i - 1] == 'a') return i + 1;
  }
  return std::nullopt;
}

inline std::optional<std::size_t> end_anchored_ab_x(std::string_view s) {  // ^[ab]*x
  std::size_t i = 0;
  while (i < s.size() && (s[i] == 'a' || s[i] == 'b')) ++i;
  if (i < s.size() && s[i] == 'x') return i + 1;
  return std::nullopt;
}

inline std::optional<std::size_t> end_blank_line(std::string_view s) {  // \r?\n\r?\n
  const std::size_t n = s.size();
  for (std::size_t p = 0; p < n; ++p) {
    // Backtracking order of a greedy `\r?`: with the \r first, then without.
    for (int r1 : {1, 0}) {
      std::size_t q = p;
      if (r1 == 1) {
        if (q < n && s[q] == '\r')
          ++q;
        else
          continue;
      }
      if (!(q < n && s[q] == '\n')) continue;
      ++q;
      for (int r2 : {1, 0}) {
        std::size_t q2 = q;
        if (r2 == 1) {
          if (q2 < n && s[q2] == '\r')
            ++q2;
          else
            continue;
        }
        if (q2 < n && s[q2] == '\n') return q2 + 1;
      }
    }
  }
  return std::nullopt;
}

inline std::optional<std::size_t> end_empty(std::string_view s) {  // "" (S20: like S17)
  if (s.empty()) return std::nullopt;
  return 0;
}

inline const pattern_spec patterns[] = {
    {"\\r?\\n", end_crlf_or_lf},        {"a+x", end_a_plus_x}, {"^[ab]*x", end_anchored_ab_x},
    {"\\r?\\n\\r?\\n", end_blank_line}, {"", end_empty},
};

inline constexpr std::string_view delimiters[] = {
    "\n", std::string_view("\0", 1),  "x",  "a", "\r\n", "\r\n\r\n",
    "ab", std::string_view("\0x", 2), "xx", "",  "ax",   "\n\n",
    "bab"};

// ------------------------------------------------------------------ the model

struct prediction {
  enum kind_t { value, prefix, closed, unsatisfiable, hang } kind = hang;
  std::size_t length = 0;  // value: exact length; prefix: upper bound (lower bound is 1)
};

/// What the application has not read yet, and whether the stream has closed.
/// `rest` holds every byte the peer will send that is not read yet (the stream's buffer is a
/// prefix of it); once the stream is closed it is exactly the buffer.
struct model {
  std::string rest;
  bool peer_closes = false;  // the peer closes after sending `rest`
  bool closed = false;       // the stream closed: it read EOF (for some read that needed it),
                             // or was closed locally (close(), a max_bytes failure)

  prediction wait_or_close() const {
    return peer_closes || closed ? prediction{prediction::closed} : prediction{prediction::hang};
  }

  // S14-S16, S18-S19 with S9/S10: `end` is where the leftmost occurrence (match) in all of
  // `rest` ends. Deterministic however the bytes are chunked.
  prediction limited(std::optional<std::size_t> end, std::size_t max_bytes) const {
    if (end && (max_bytes == 0 || *end <= max_bytes)) return {prediction::value, *end};
    bool exceeded = max_bytes != 0 && (end.has_value() || rest.size() > max_bytes);
    if (exceeded) {
      // A closed stream serves what its buffer can satisfy and fails the rest with
      // stream_closed_error{error()} (S9, S10); only an open stream closes with
      // unsatisfiable_read (S16).
      return closed ? prediction{prediction::closed} : prediction{prediction::unsatisfiable};
    }
    return wait_or_close();
  }

  prediction until(std::string_view delimiter, std::size_t max_bytes) const {
    if (delimiter.empty()) {  // S17
      return rest.empty() ? wait_or_close() : prediction{prediction::value, 0};
    }
    std::size_t pos = rest.find(delimiter);
    std::optional<std::size_t> end;
    if (pos != std::string::npos) end = pos + delimiter.size();
    return limited(end, max_bytes);
  }

  prediction regex(const pattern_spec& p, std::size_t max_bytes) const {
    if (rest.empty()) return wait_or_close();
    return limited(p.match_end(rest), max_bytes);
  }

  prediction bytes(std::size_t n, bool partial) const {
    if (n == 0) return {prediction::value, 0};  // S23, even when closed
    if (partial) {                              // S22
      if (rest.empty()) return wait_or_close();
      return {prediction::prefix, std::min(n, rest.size())};
    }
    if (rest.size() >= n) return {prediction::value, n};  // S21
    return wait_or_close();
  }

  prediction until_close() const {  // S26, S27
    if (peer_closes || closed) return {prediction::value, rest.size()};
    return {prediction::hang};
  }
};

// ------------------------------------------------------------------ diagnostics

/// `s` with control bytes escaped, cut at `limit` bytes.
inline std::string printable(std::string_view s, std::size_t limit = 80) {
  std::string out;
  for (std::size_t i = 0; i < s.size() && i < limit; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '\r':
        out += "\\r";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\0':
        out += "\\0";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          char hex[8];
          std::snprintf(hex, sizeof hex, "\\x%02x", c);
          out += hex;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  if (s.size() > limit) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

}  // namespace corio::testing
