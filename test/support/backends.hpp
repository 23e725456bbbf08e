// test/support/backends.hpp - run a test on both backends (conventions.md: every I/O test).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "corio/loop.hpp"
#include "corio/timeout.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define CORIO_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORIO_TEST_ASAN 1
#endif
#endif

namespace corio::testing {

/// True in an AddressSanitizer build (tests shorten their runs or skip allocation counts).
#ifdef CORIO_TEST_ASAN
inline constexpr bool under_asan = true;
#else
inline constexpr bool under_asan = false;
#endif

/// Fixture base for tests parametrized over the backend.
class backend_test : public ::testing::TestWithParam<corio::backend> {
 protected:
  loop_options options() const {
    loop_options o;
    o.backend = GetParam();
    return o;
  }
  /// Runs `work` on a fresh loop of the parametrized backend with a bounded time limit, so
  /// that a hang fails the test instead of stalling CI.
  template <class T>
  T run(task<T> work, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    event_loop loop(options());
    return loop.run(with_timeout(limit, std::move(work)));
  }
};

inline std::string backend_name(const ::testing::TestParamInfo<corio::backend>& info) {
  return info.param == corio::backend::io_uring ? "io_uring" : "epoll";
}

/// Open file descriptors of this process (counts /proc/self/fd).
int open_fd_count();

/// Milliseconds of the steady clock since `start` (tests print and bound durations).
inline double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

/// True if a loop of backend `b` keeps a multishot receive per stream: io_uring on Linux
/// 6.0 or later, unless CORIO_NO_MULTISHOT turns it off. Decided apart from the loop's
/// counters, so that a test expecting multishot arms fails when none are made.
bool multishot_expected(corio::backend b);

}  // namespace corio::testing

/// ASSERT_TRUE for coroutines: ASSERT_* cannot be used there (it expands to `return;`).
#define CO_ASSERT_TRUE(cond)                               \
  do {                                                     \
    if (!(cond)) {                                         \
      ADD_FAILURE() << "CO_ASSERT_TRUE(" #cond ") failed"; \
      co_return;                                           \
    }                                                      \
  } while (0)

#define CORIO_INSTANTIATE_BACKENDS(suite)                                                          \
  INSTANTIATE_TEST_SUITE_P(Backends, suite,                                                        \
                           ::testing::Values(::corio::backend::io_uring, ::corio::backend::epoll), \
                           ::corio::testing::backend_name)
