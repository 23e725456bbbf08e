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
#include "spare_strings.hpp"

namespace corio::detail {

/// Bytes received but not yet read: [start_, end_) of one allocation. Receives go straight
/// into the spare space at the tail; consuming advances start_; the unread tail is moved to
/// the front only when space is needed (amortised, architecture.md "Performance design").
///
/// The allocation is a pool block, or a string that a read taking all of it receives without
/// another copy:
/// - adopt: bytes received elsewhere (a provided or scratch buffer) that a pending read will
///   take whole are copied into a string of their size;
/// - adopt_string: a string a receive landed in (io_uring, after large receives).
class read_buffer {
 public:
  read_buffer() noexcept = default;
  read_buffer(const read_buffer&) = delete;
  read_buffer& operator=(const read_buffer&) = delete;
  ~read_buffer() { drop_storage(); }

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
  /// Makes the (empty) buffer hold a copy of `bytes` in a string of their size, so that a
  /// take() of all of them moves that string instead of copying again.
  void adopt(std::span<const std::byte> bytes) {
    if (bytes.empty()) return;  // an empty owned_ means "no string" (in_string)
    std::string adopted = spare_strings::local().take_fitting(bytes.size());
    adopted.assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    if (storage_ != nullptr) drop_storage();
    owned_ = std::move(adopted);
    storage_ = owned_.data();
    capacity_ = end_ = owned_.size();
    start_ = 0;
  }
  /// Makes the (empty) buffer's storage `bytes`, of which the first `n` (> 0) hold data.
  void adopt_string(std::string&& bytes, std::size_t n) noexcept {
    if (storage_ != nullptr) drop_storage();
    owned_ = std::move(bytes);
    storage_ = owned_.data();
    capacity_ = owned_.size();
    start_ = 0;
    end_ = n;
  }
  /// True if prepare(n) needs no allocation (nor a move of the unread bytes).
  bool has_room(std::size_t n) const noexcept { return capacity_ - end_ >= n; }

  /// Gives the storage back to the thread's pool when nothing is buffered: an idle stream
  /// then holds no receive memory (the next prepare() takes a block again).
  void release_if_empty() noexcept {
    if (!empty() || storage_ == nullptr) return;
    drop_storage();
    start_ = end_ = 0;
  }

  /// Removes and returns the first n bytes: the string storage when they are all its data
  /// and its capacity is at most 2n+64 (a result never holds much more memory than its
  /// size, the bound spare_strings::take_fitting keeps), else a copy (in a spare string if
  /// one fits).
  std::string take(std::size_t n) {
    if (in_string() && start_ == 0 && n == end_ && 2 * n + 64 >= owned_.capacity()) {
      owned_.resize(n);  // shrinks: writes only the terminator
      std::string out = std::move(owned_);
      owned_.clear();  // nothing to give back: the buffer holds no storage now
      storage_ = nullptr;
      capacity_ = start_ = end_ = 0;
      return out;
    }
    std::string out = spare_strings::local().take_fitting(n);
    out.assign(data(), n);
    consume(n);
    return out;
  }
  void consume(std::size_t n) noexcept {
    start_ += n;
    if (start_ == end_) start_ = end_ = 0;
  }

 private:
  void make_room(std::size_t n) {
    std::size_t live = size();
    if (start_ > 0 && capacity_ - live >= n && live <= capacity_ / 2) {
      std::memmove(storage_, storage_ + start_, live);
    } else {
      std::size_t want = live + n;
      std::size_t grown = live == 0 ? 0 : capacity_ * 2;  // empty: no history to grow from
      std::size_t cap = grown > want ? grown : want;
      char* fresh = acquire_buffer(cap);
      if (live) std::memcpy(fresh, storage_ + start_, live);
      drop_storage();
      storage_ = fresh;
      capacity_ = cap;
    }
    start_ = 0;
    end_ = live;
  }

  /// Gives the allocation back (a string to the thread's spares); the caller resets start_
  /// and end_.
  void drop_storage() noexcept {
    if (in_string()) {
      spare_strings::local().give(owned_);
      owned_ = std::string();
    } else {
      release_buffer(storage_, capacity_);
    }
    storage_ = nullptr;
    capacity_ = 0;
  }

  char* storage_ = nullptr;  // from acquire_buffer (or owned_'s bytes), capacity_ bytes
  std::size_t capacity_ = 0;
  std::size_t start_ = 0;
  std::size_t end_ = 0;
  /// The string while storage_ is its chars (capacity_ its size), else empty: adopt and
  /// adopt_string never take an empty one.
  std::string owned_;
  bool in_string() const noexcept { return !owned_.empty(); }
};

}  // namespace corio::detail
