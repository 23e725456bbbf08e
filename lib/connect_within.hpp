// connect_within: a connect's time limit whose timeout_error says what was connected to.
#pragma once

#include <chrono>
#include <string>
#include <utility>

#include "corio/errors.hpp"
#include "corio/task.hpp"
#include "corio/timeout.hpp"

namespace corio::detail {

/// Awaits `work`; sets *own_timeout if it fails with a timeout_error of its own.
template <class T>
task<T> note_own_timeout(task<T> work, bool* own_timeout) {
  try {
    co_return co_await std::move(work);
  } catch (const timeout_error&) {
    *own_timeout = true;
    throw;
  }
}

/// `work` within `limit`, as with_timeout, but on expiry the timeout_error reads
/// "<what> within <limit>" (limit_text): with_timeout's own message names no host. A
/// timeout_error thrown by `work` itself (a limit of its own) passes through as it is:
/// only this limit's expiry is the connect's.
template <class T>
task<T> connect_within(std::chrono::nanoseconds limit, task<T> work, std::string what) {
  bool own_timeout = false;
  try {
    co_return co_await with_timeout(limit, note_own_timeout(std::move(work), &own_timeout));
  } catch (const timeout_error&) {
    if (own_timeout) throw;
    // Otherwise thrown below: nothing may be awaited in a handler, and the new error
    // replaces this one.
  }
  throw timeout_error(what + " within " + limit_text(limit));
}

}  // namespace corio::detail
