// lib/buffer_pool.hpp - receive-buffer storage recycled per thread.
#pragma once

#include <cstddef>

namespace corio::detail {

/// Storage of at least `capacity` bytes; `capacity` is raised to what the block really holds.
/// Why a pool: a stream gives its receive buffer back whenever it is empty and waiting
/// (so 10,000 idle connections hold no receive memory), and takes one again when bytes
/// arrive; the thread's pool makes that round trip a pointer swap instead of malloc/free.
char* acquire_buffer(std::size_t& capacity);

/// Returns storage obtained from acquire_buffer with the capacity it reported.
void release_buffer(char* storage, std::size_t capacity) noexcept;

}  // namespace corio::detail
