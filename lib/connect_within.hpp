// connect_within: a connect's time limit whose timeout_error says what was connected to.
#pragma once

#include <chrono>
#include <string>
#include <utility>

#include "corio/errors.hpp"
#include "corio/task.hpp"
#include "corio/timeout.hpp"

namespace corio::detail {

/// `work` within `limit`, as with_timeout, but on expiry the timeout_error reads
/// "<what> within N ms": with_timeout's own message names no host.
template <class T>
task<T> connect_within(std::chrono::nanoseconds limit, task<T> work, std::string what) {
  try {
    co_return co_await with_timeout(limit, std::move(work));
  } catch (const timeout_error&) {
    // Thrown below: nothing may be awaited in a handler, and the new error replaces this one.
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(limit).count();
  throw timeout_error(what + " within " + std::to_string(ms) + " ms");
}

}  // namespace corio::detail
