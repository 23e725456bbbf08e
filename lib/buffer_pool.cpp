#include "buffer_pool.hpp"

#include <array>
#include <bit>
#include <new>

#include "corio/detail/frame_allocator.hpp"

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

// Up to 2 KiB the frame pool already recycles blocks in 64-byte steps. Above that, blocks are
// powers of two from 4 KiB to 1 MiB, a few kept per size: enough for the streams of one loop
// turn, bounded so that a burst does not pin memory for ever.
constexpr std::size_t small_limit = 2048;
constexpr std::size_t first_large = 4096;
constexpr std::size_t large_classes = 9;  // 4 KiB … 1 MiB
constexpr std::size_t kept_per_class = 8;

struct large_pool {
  std::array<std::array<char*, kept_per_class>, large_classes> blocks{};
  std::array<std::size_t, large_classes> kept{};

  ~large_pool() {
    for (std::size_t c = 0; c < large_classes; ++c) {
      for (std::size_t i = 0; i < kept[c]; ++i) ::operator delete(blocks[c][i]);
    }
  }
};

large_pool& local_pool() {
  thread_local large_pool pool;
  return pool;
}

std::size_t class_of(std::size_t capacity) {
  return static_cast<std::size_t>(std::countr_zero(capacity / first_large));
}

}  // namespace

char* acquire_buffer(std::size_t& capacity) {
  if (capacity <= small_limit) {
    capacity = (capacity + 63) / 64 * 64;
    if (capacity == 0) capacity = 64;
    return static_cast<char*>(pooled_allocate(capacity));
  }
  capacity = std::bit_ceil(capacity < first_large ? first_large : capacity);
  std::size_t c = class_of(capacity);
  if (recycle && c < large_classes) {
    large_pool& pool = local_pool();
    if (pool.kept[c] > 0) return pool.blocks[c][--pool.kept[c]];
  }
  return static_cast<char*>(::operator new(capacity));
}

void release_buffer(char* storage, std::size_t capacity) noexcept {
  if (storage == nullptr) return;
  if (capacity <= small_limit) {
    pooled_deallocate(storage, capacity);
    return;
  }
  std::size_t c = class_of(capacity);
  if (recycle && c < large_classes) {
    large_pool& pool = local_pool();
    if (pool.kept[c] < kept_per_class) {
      pool.blocks[c][pool.kept[c]++] = storage;
      return;
    }
  }
  ::operator delete(storage);
}

}  // namespace corio::detail
