// lib/read_buffer.hpp - the stream's contiguous receive buffer.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "buffer_pool.hpp"

namespace corio::detail {

/// Bytes received but not yet read: [start_, end_) of one allocation. Receives go straight
/// into the spare space at the tail; consuming advances start_; the unread tail is moved to
/// the front only when space is needed (amortised, architecture.md "Performance design").
class read_buffer {
 public:
  read_buffer() noexcept = default;
  read_buffer(const read_buffer&) = delete;
  read_buffer& operator=(const read_buffer&) = delete;
  ~read_buffer() { release_buffer(storage_, capacity_); }

  std::size_t size() const noexcept { return end_ - start_; }
  bool empty() const noexcept { return end_ == start_; }
  const char* data() const noexcept { return storage_ + start_; }
  std::string_view view() const noexcept { return {data(), size()}; }

  /// Space for at least `n` more bytes at the tail.
  std::span<std::byte> prepare(std::size_t n) {
    if (capacity_ - end_ < n) make_room(n);
    return {reinterpret_cast<std::byte*>(storage_ + end_), n};
  }
  void commit(std::size_t n) noexcept { end_ += n; }
  /// True if prepare(n) needs no allocation (nor a move of the unread bytes).
  bool has_room(std::size_t n) const noexcept { return capacity_ - end_ >= n; }

  /// Gives the storage back to the thread's pool when nothing is buffered: an idle stream
  /// then holds no receive memory (the next prepare() takes a block again).
  void release_if_empty() noexcept {
    if (!empty() || storage_ == nullptr) return;
    release_buffer(std::exchange(storage_, nullptr), std::exchange(capacity_, 0));
    start_ = end_ = 0;
  }

  /// Removes and returns the first n bytes.
  std::string take(std::size_t n) {
    std::string out(data(), n);
    consume(n);
    return out;
  }
  void consume(std::size_t n) noexcept {
    start_ += n;
    if (start_ == end_) start_ = end_ = 0;
  }
  /// Puts bytes back at the front (a withdrawn read_into returns what it had copied).
  void unread(std::span<const std::byte> bytes) {
    if (bytes.empty()) return;
    if (start_ >= bytes.size()) {
      start_ -= bytes.size();
      std::memcpy(storage_ + start_, bytes.data(), bytes.size());
      return;
    }
    std::size_t live = size();
    std::size_t cap = live + bytes.size() + 1;
    char* fresh = acquire_buffer(cap);
    std::memcpy(fresh, bytes.data(), bytes.size());
    if (live) std::memcpy(fresh + bytes.size(), data(), live);
    release_buffer(storage_, capacity_);
    storage_ = fresh;
    capacity_ = cap;
    start_ = 0;
    end_ = live + bytes.size();
  }

 private:
  void make_room(std::size_t n) {
    std::size_t live = size();
    if (start_ > 0 && capacity_ - live >= n && live <= capacity_ / 2) {
      std::memmove(storage_, storage_ + start_, live);
    } else {
      std::size_t want = live + n;
      std::size_t grown = capacity_ * 2;
      std::size_t cap = grown > want ? grown : want;
      char* fresh = acquire_buffer(cap);
      if (live) std::memcpy(fresh, storage_ + start_, live);
      release_buffer(storage_, capacity_);
      storage_ = fresh;
      capacity_ = cap;
    }
    start_ = 0;
    end_ = live;
  }

  char* storage_ = nullptr;  // from acquire_buffer, capacity_ bytes
  std::size_t capacity_ = 0;
  std::size_t start_ = 0;
  std::size_t end_ = 0;
};

}  // namespace corio::detail
