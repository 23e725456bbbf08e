// lib/pool_allocator.hpp - a std::allocator that draws from the thread's recycling pool.
#pragma once

#include <cstddef>

#include "corio/detail/frame_allocator.hpp"

namespace corio::detail {

/// Allocator for the stream's write-queue deques. Why: libstdc++'s std::deque frees and
/// reallocates a 512-byte node every 512/sizeof(T) push/pop cycles (every 16 writes for
/// std::string pieces); through the pool those nodes are recycled, so steady-state writes
/// do not malloc (architecture.md "Performance design"). std::deque itself is kept because
/// io_uring sends point into its elements (SSO strings), which push_back must never move.
template <class T>
struct pool_allocator {
  using value_type = T;
  pool_allocator() noexcept = default;
  template <class U>
  pool_allocator(const pool_allocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(pooled_allocate(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { pooled_deallocate(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const pool_allocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace corio::detail
