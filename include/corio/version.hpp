#pragma once

/// @file
/// @brief The library's version.

namespace corio {

/// The library version as "major.minor.patch".
constexpr const char* version_string = "0.1.0";

/// The library's major version number.
int version_major() noexcept;

}  // namespace corio
