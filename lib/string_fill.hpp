// lib/string_fill.hpp - growing a std::string without writing its new chars.
#pragma once

#include <cstddef>
#include <string>

namespace corio::detail {

/// Makes `s` hold `n` chars; those past its old size are unspecified until overwritten (a
/// receive lands in them). Why: zero-filling 64 KiB before the kernel writes the same bytes
/// would cost about what receiving into the string saves.
void resize_for_overwrite(std::string& s, std::size_t n);

}  // namespace corio::detail
