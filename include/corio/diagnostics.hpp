// corio/diagnostics.hpp - what this machine offers corio (printed by the corio-info tool).
#pragma once

#include <string>

namespace corio {

/// A human-readable report: kernel version, whether io_uring can be created (and if not, why
/// corio falls back to epoll), the ring features and opcodes probed, and which of them corio
/// uses. Meant to be pasted into bug reports; creates and destroys a small ring to find out.
std::string diagnostics();

}  // namespace corio
