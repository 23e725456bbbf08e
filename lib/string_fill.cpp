// lib/string_fill.cpp - built as C++23 (see CMakeLists.txt) for
// std::string::resize_and_overwrite; the rest of the library, and its API, are C++20.
// std::string is the same type in both modes.
#include "string_fill.hpp"

namespace corio::detail {

void resize_for_overwrite(std::string& s, std::size_t n) {
#if defined(__cpp_lib_string_resize_and_overwrite)
  s.resize_and_overwrite(n, [](char*, std::size_t size) noexcept { return size; });
#else
  s.resize(n);  // a standard library without it: the same result, plus a zero fill
#endif
}

}  // namespace corio::detail
