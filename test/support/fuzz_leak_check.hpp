// test/support/fuzz_leak_check.hpp - for libFuzzer targets whose loops and pools outlive an input.
#pragma once

#include <string_view>
#include <vector>

namespace corio::testing {

/// Call from LLVMFuzzerInitialize: adds -detect_leaks=0 unless the command line sets it.
/// Why: the loops, their op pools and the frame allocator's pools live across inputs by
/// design, so an input's mallocs and frees rarely balance, and libFuzzer would then run a
/// full LeakSanitizer scan after almost every input (3x slower). LeakSanitizer still checks
/// the whole run at exit.
inline void disable_per_input_leak_check(int* argc, char*** argv) {
  for (int i = 1; i < *argc; ++i) {
    if (std::string_view((*argv)[i]).starts_with("-detect_leaks=")) return;
  }
  static std::vector<char*> args;
  args.assign(*argv, *argv + *argc);
  static char flag[] = "-detect_leaks=0";
  args.push_back(flag);
  args.push_back(nullptr);
  *argc += 1;
  *argv = args.data();
}

}  // namespace corio::testing
