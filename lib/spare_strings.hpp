// lib/spare_strings.hpp - the per-thread pool of strings that writes and read results reuse.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace corio::detail {

/// Strings of sent writes kept for reuse, shared by the streams of a thread (so an idle
/// stream holds none): write(string_view) copies into one, and a read's result takes one of
/// about its size, so a server that writes back what it reads (read, then
/// write(std::move(result))) allocates nothing per message. Bounded in count, in bytes and in
/// the capacity of each, so that a burst does not pin memory.
class spare_strings {
 public:
  /// The capacity a merged piece grows to at once (stream_core::merge_into_last_piece).
  static constexpr std::size_t wide_capacity = 2048;

  static spare_strings& local() noexcept {
    thread_local spare_strings spares;
    return spares;
  }
  /// A spare whose capacity is at least n and at most about twice n (so that a result kept
  /// for long does not pin a much larger block), or an empty string.
  std::string take_fitting(std::size_t n) noexcept {
    std::vector<std::string>& list = 2 * n + 64 < wide_capacity ? strings_ : wide_;
    if (list.empty() || list.back().capacity() < n || list.back().capacity() > 2 * n + 64) {
      return {};
    }
    return take_back(list);
  }
  /// A spare to copy n bytes into (a wide one first when n needs it), or an empty string.
  std::string take_for_copy(std::size_t n) noexcept {
    if (n >= wide_capacity / 2 && !wide_.empty()) return take_back(wide_);
    if (!strings_.empty()) return take_back(strings_);
    return wide_.empty() ? std::string() : take_back(wide_);
  }
  /// A spare that can hold a whole merged piece (wide_capacity bytes), or an empty string.
  /// Kept apart so that the small results taken and given for each line do not hide them.
  std::string take_wide() noexcept { return wide_.empty() ? std::string() : take_back(wide_); }
  /// Keeps `piece`'s memory if there is room (leaves it empty then).
  void give(std::string& piece) noexcept {
    static const std::size_t inline_capacity = std::string().capacity();  // SSO: none to keep
    const std::size_t capacity = piece.capacity();
    std::vector<std::string>& list = capacity >= wide_capacity ? wide_ : strings_;
    if (capacity <= inline_capacity || capacity > max_capacity || list.size() >= max_count ||
        bytes_ + capacity > max_bytes) {
      return;
    }
    try {
      if (list.capacity() < max_count) list.reserve(max_count);  // once per thread
      piece.clear();
      list.push_back(std::move(piece));
      bytes_ += capacity;
    } catch (...) {
    }
  }

 private:
  static constexpr std::size_t max_count = 1024;  // lines in flight on a busy loop
  // All spares together. Why spares up to a whole read chunk: a 32 KiB result allocated and
  // freed per read made glibc grow and trim its heap, two page faults per read (raw echo of
  // 4 KiB messages: 105k faults and 3.9k brk calls in 2 s); kept here, it is reused instead.
  static constexpr std::size_t max_bytes = 4 << 20;
  static constexpr std::size_t max_capacity = 64 << 10;  // each: the default read_chunk_size

  std::string take_back(std::vector<std::string>& list) noexcept {
    std::string out = std::move(list.back());
    list.pop_back();
    bytes_ -= out.capacity();
    return out;
  }

  std::vector<std::string> strings_;
  std::vector<std::string> wide_;  // capacity >= wide_capacity
  std::size_t bytes_ = 0;
};

}  // namespace corio::detail
