#include "corio/detail/frame_allocator.hpp"

#include <array>
#include <new>

namespace corio::detail {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool recycle = false;  // Why: recycling would hide use-after-free from ASan.
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool recycle = false;
#else
constexpr bool recycle = true;
#endif
#else
constexpr bool recycle = true;
#endif

constexpr std::size_t granule = 64;
constexpr std::size_t class_count = 32;  // blocks up to 2 KiB are recycled
constexpr std::size_t max_cached_per_class = 1024;

struct free_block {
  free_block* next;
};

struct thread_pool {
  std::array<free_block*, class_count> heads{};
  std::array<std::size_t, class_count> cached{};
  pool_counters counters;

  ~thread_pool() {
    for (auto*& head : heads) {
      while (head) {
        free_block* next = head->next;
        ::operator delete(head);
        head = next;
      }
    }
  }
};

thread_pool& local_pool() {
  thread_local thread_pool pool;
  return pool;
}

std::size_t size_class(std::size_t size) { return (size + granule - 1) / granule - 1; }

}  // namespace

void* pooled_allocate(std::size_t size) {
  thread_pool& pool = local_pool();
  ++pool.counters.live_blocks;
  std::size_t cls = size_class(size);
  if (recycle && cls < class_count && pool.heads[cls] != nullptr) {
    free_block* block = pool.heads[cls];
    pool.heads[cls] = block->next;
    --pool.cached[cls];
    return block;
  }
  ++pool.counters.fresh_allocations;
  if (cls < class_count) return ::operator new((cls + 1) * granule);
  return ::operator new(size);
}

void pooled_deallocate(void* block, std::size_t size) noexcept {
  if (block == nullptr) return;
  thread_pool& pool = local_pool();
  --pool.counters.live_blocks;
  std::size_t cls = size_class(size);
  if (recycle && cls < class_count && pool.cached[cls] < max_cached_per_class) {
    auto* node = static_cast<free_block*>(block);
    node->next = pool.heads[cls];
    pool.heads[cls] = node;
    ++pool.cached[cls];
    return;
  }
  ::operator delete(block);
}

pool_counters pool_stats() noexcept { return local_pool().counters; }

}  // namespace corio::detail
