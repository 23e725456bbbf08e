// corio/detail/frame_allocator.hpp - recycles coroutine frames and op states per thread.
#pragma once

#include <cstddef>
#include <cstdint>

namespace corio::detail {

/// Allocates `size` bytes from the calling thread's recycling pool (falls back to operator new
/// for large blocks). Why: a coroutine frame per stream operation would otherwise cost a
/// malloc/free pair per read in steady state (architecture.md, "Performance design").
void* pooled_allocate(std::size_t size);

/// Returns a block obtained from pooled_allocate with the same size.
void pooled_deallocate(void* block, std::size_t size) noexcept;

/// Counters of the calling thread's pool: used by tests to prove frames are freed.
struct pool_counters {
  std::int64_t live_blocks = 0;         ///< allocated and not yet returned
  std::uint64_t fresh_allocations = 0;  ///< blocks that had to come from operator new
};

/// The calling thread's counters.
pool_counters pool_stats() noexcept;

/// Mixin for types (coroutine promises, op states) whose storage comes from the pool.
struct pooled {
  static void* operator new(std::size_t size) { return pooled_allocate(size); }
  static void operator delete(void* block, std::size_t size) noexcept {
    pooled_deallocate(block, size);
  }
};

/// A standard allocator over the same pool, for the nodes of containers on hot paths (the
/// loop's timers: one per with_timeout that waits).
template <class T>
struct pool_allocator {
  using value_type = T;
  pool_allocator() noexcept = default;
  template <class U>
  pool_allocator(const pool_allocator<U>& /*other*/) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(pooled_allocate(n * sizeof(T))); }
  void deallocate(T* block, std::size_t n) noexcept { pooled_deallocate(block, n * sizeof(T)); }
  friend bool operator==(const pool_allocator&, const pool_allocator&) noexcept { return true; }
};

}  // namespace corio::detail
