// lib/read_buffer.hpp - the stream's contiguous receive buffer.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace corio::detail {

/// Bytes received but not yet read: [start_, end_) of one allocation. Receives go straight
/// into the spare space at the tail; consuming advances start_; the unread tail is moved to
/// the front only when space is needed (amortised, architecture.md "Performance design").
class read_buffer {
 public:
  std::size_t size() const noexcept { return end_ - start_; }
  bool empty() const noexcept { return end_ == start_; }
  const char* data() const noexcept { return storage_.get() + start_; }
  std::string_view view() const noexcept { return {data(), size()}; }

  /// Space for at least `n` more bytes at the tail.
  std::span<std::byte> prepare(std::size_t n) {
    if (capacity_ - end_ < n) make_room(n);
    return {reinterpret_cast<std::byte*>(storage_.get() + end_), n};
  }
  void commit(std::size_t n) noexcept { end_ += n; }

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
      std::memcpy(storage_.get() + start_, bytes.data(), bytes.size());
      return;
    }
    std::size_t live = size();
    std::unique_ptr<char[]> fresh(new char[live + bytes.size() + 1]);
    std::memcpy(fresh.get(), bytes.data(), bytes.size());
    if (live) std::memcpy(fresh.get() + bytes.size(), data(), live);
    storage_ = std::move(fresh);
    capacity_ = live + bytes.size() + 1;
    start_ = 0;
    end_ = live + bytes.size();
  }

 private:
  void make_room(std::size_t n) {
    std::size_t live = size();
    if (start_ > 0 && capacity_ - live >= n && live <= capacity_ / 2) {
      std::memmove(storage_.get(), storage_.get() + start_, live);
    } else {
      std::size_t want = live + n;
      std::size_t grown = capacity_ * 2;
      std::size_t cap = grown > want ? grown : want;
      std::unique_ptr<char[]> fresh(new char[cap]);
      if (live) std::memcpy(fresh.get(), storage_.get() + start_, live);
      storage_ = std::move(fresh);
      capacity_ = cap;
    }
    start_ = 0;
    end_ = live;
  }

  std::unique_ptr<char[]> storage_;
  std::size_t capacity_ = 0;
  std::size_t start_ = 0;
  std::size_t end_ = 0;
};

}  // namespace corio::detail
