// lib/stable_queue.hpp - a FIFO whose elements never move and which owns no memory when empty.
#pragma once

#include <cstddef>
#include <iterator>
#include <new>
#include <utility>

#include "corio/detail/frame_allocator.hpp"

namespace corio::detail {

/// A FIFO of T kept in a chain of small blocks drawn from the thread's recycling pool.
///
/// Why not std::deque: io_uring sends point into queued strings (short strings keep their
/// bytes inline), so elements must never move, which a deque guarantees too; but libstdc++'s
/// deque allocates a map and a 512-byte node as soon as it is constructed and keeps them for
/// its lifetime, about 1.2 KiB per stream for the write queues alone. An idle connection should
/// cost nothing here: this queue allocates its first block on the first push and returns the
/// last one to the pool when it empties, so steady-state traffic recycles one block per stream
/// through the pool without calling malloc.
template <class T>
class stable_queue {
  static constexpr std::size_t block_bytes = 512;
  static constexpr std::size_t per_block = (block_bytes - sizeof(void*)) / sizeof(T) > 0
                                               ? (block_bytes - sizeof(void*)) / sizeof(T)
                                               : 1;

  struct block {
    block* next = nullptr;
    alignas(T) std::byte slots[per_block * sizeof(T)];
    T* at(std::size_t i) noexcept { return std::launder(reinterpret_cast<T*>(slots) + i); }
  };

 public:
  template <class Value, class Block>
  class basic_iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = Value*;
    using reference = Value&;

    basic_iterator() = default;
    basic_iterator(Block* b, std::size_t i) noexcept : block_(b), index_(i) {}
    reference operator*() const noexcept { return *block_->at(index_); }
    pointer operator->() const noexcept { return block_->at(index_); }
    basic_iterator& operator++() noexcept {
      if (++index_ == per_block && block_->next != nullptr) {
        block_ = block_->next;
        index_ = 0;
      }
      return *this;
    }
    basic_iterator operator++(int) noexcept {
      basic_iterator old = *this;
      ++*this;
      return old;
    }
    bool operator==(const basic_iterator&) const = default;

   private:
    Block* block_ = nullptr;
    std::size_t index_ = 0;
  };
  using iterator = basic_iterator<T, block>;
  using const_iterator = basic_iterator<const T, block>;

  stable_queue() noexcept = default;
  stable_queue(stable_queue&& other) noexcept { steal(other); }
  stable_queue& operator=(stable_queue&& other) noexcept {
    if (this != &other) {
      clear();
      steal(other);
    }
    return *this;
  }
  ~stable_queue() { clear(); }

  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }

  T& front() noexcept { return *front_->at(head_); }
  const T& front() const noexcept { return *front_->at(head_); }
  T& back() noexcept { return *back_->at(tail_ - 1); }
  const T& back() const noexcept { return *back_->at(tail_ - 1); }

  template <class... Args>
  T& emplace_back(Args&&... args) {
    if (back_ == nullptr || tail_ == per_block) {
      block* fresh = new (pooled_allocate(sizeof(block))) block;
      try {
        ::new (fresh->at(0)) T(std::forward<Args>(args)...);
      } catch (...) {
        release(fresh);
        throw;
      }
      if (back_ == nullptr) {
        front_ = fresh;
        head_ = 0;
      } else {
        back_->next = fresh;
      }
      back_ = fresh;
      tail_ = 1;
    } else {
      ::new (back_->at(tail_)) T(std::forward<Args>(args)...);
      ++tail_;
    }
    ++size_;
    return back();
  }
  void push_back(T&& value) { emplace_back(std::move(value)); }
  void push_back(const T& value) { emplace_back(value); }

  void pop_front() noexcept {
    front_->at(head_)->~T();
    ++head_;
    if (--size_ == 0) {
      release(front_);
      front_ = back_ = nullptr;
      head_ = tail_ = 0;
    } else if (head_ == per_block) {
      block* spent = front_;
      front_ = front_->next;
      head_ = 0;
      release(spent);
    }
  }

  void clear() noexcept {
    while (size_ > 0) pop_front();
  }

  iterator begin() noexcept { return size_ ? iterator(front_, head_) : end(); }
  iterator end() noexcept { return iterator(back_, tail_); }
  const_iterator begin() const noexcept { return size_ ? const_iterator(front_, head_) : end(); }
  const_iterator end() const noexcept { return const_iterator(back_, tail_); }

 private:
  static void release(block* b) noexcept {
    b->~block();
    pooled_deallocate(b, sizeof(block));
  }
  void steal(stable_queue& other) noexcept {
    front_ = std::exchange(other.front_, nullptr);
    back_ = std::exchange(other.back_, nullptr);
    head_ = std::exchange(other.head_, 0);
    tail_ = std::exchange(other.tail_, 0);
    size_ = std::exchange(other.size_, 0);
  }

  block* front_ = nullptr;
  block* back_ = nullptr;
  std::size_t head_ = 0;  // first live slot of front_
  std::size_t tail_ = 0;  // one past the last live slot of back_
  std::size_t size_ = 0;
};

}  // namespace corio::detail
