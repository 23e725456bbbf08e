// test/support/observe.hpp - what one read did, as the stream model tests compare it: a value,
// or which error it failed with. Shared by the equivalence test and the stream_model fuzz target.
#pragma once

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <type_traits>

#include "corio/corio.hpp"

namespace corio::testing {

/// What a read produced.
struct observed {
  enum kind_t { value, closed, timeout, logic, other } kind = other;
  std::string data;  // value (a count as decimal text; read_into: the bytes written)
  std::error_code code;
  std::string what;
};

/// Awaits `op` (bounded by `limit` when given) and records its outcome.
template <class T>
task<observed> observe(task<T> op, std::optional<std::chrono::nanoseconds> limit) {
  observed o;
  try {
    // Why: not `T v = c ? co_await a : co_await b;` -- g++ 12 mishandles the temporaries of
    // co_await inside ?: (the string ends up freed twice).
    std::optional<T> v;
    if (limit) {
      v.emplace(co_await with_timeout(*limit, std::move(op)));
    } else {
      v.emplace(co_await std::move(op));
    }
    o.kind = observed::value;
    if constexpr (std::is_same_v<T, std::string>) {
      o.data = std::move(*v);
    } else {
      o.data = std::to_string(*v);
    }
  } catch (const stream_closed_error& e) {
    o.kind = observed::closed;
    o.code = e.code();
    o.what = e.what();
  } catch (const timeout_error& e) {
    o.kind = observed::timeout;
    o.what = e.what();
  } catch (const std::logic_error& e) {
    o.kind = observed::logic;
    o.what = e.what();
  } catch (const std::exception& e) {
    o.kind = observed::other;
    o.what = e.what();
  }
  co_return o;
}

}  // namespace corio::testing
