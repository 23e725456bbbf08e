// corio/detail/ready_queue.hpp - the loop's queue of things to run in the next iteration.
#pragma once

#include <utility>

namespace corio::detail {

/// An entry of the event loop's ready queue (intrusive, so scheduling never allocates).
/// Why intrusive and self-unlinking: a coroutine scheduled for resumption may be destroyed
/// before the queue runs (a timeout firing in the same iteration); its node then leaves the
/// queue in its destructor instead of leaving a dangling handle behind.
class ready_node {
 public:
  ready_node() = default;
  ready_node(const ready_node&) = delete;
  ready_node& operator=(const ready_node&) = delete;

  bool queued() const noexcept { return next_ != nullptr; }
  /// Removes the node from whatever queue holds it (no-op if none).
  void unqueue() noexcept {
    if (next_ != nullptr) {
      prev_->next_ = next_;
      next_->prev_ = prev_;
      prev_ = next_ = nullptr;
    }
  }
  /// Runs the node's work. Called after it was unqueued.
  virtual void run_ready() = 0;
  /// The loop is being destroyed with the node still queued. Default: just forget it.
  virtual void discard() noexcept {}

 protected:
  ~ready_node() { unqueue(); }

 private:
  friend class ready_list;
  ready_node* prev_ = nullptr;
  ready_node* next_ = nullptr;
};

/// A doubly linked list of ready_nodes with a sentinel.
class ready_list {
 public:
  ready_list() noexcept { head_.prev_ = head_.next_ = &head_; }
  ready_list(const ready_list&) = delete;
  ready_list& operator=(const ready_list&) = delete;
  ~ready_list() { clear_discarding(); }

  bool empty() const noexcept { return head_.next_ == &head_; }
  void push_back(ready_node& node) noexcept {
    node.unqueue();
    node.prev_ = head_.prev_;
    node.next_ = &head_;
    head_.prev_->next_ = &node;
    head_.prev_ = &node;
  }
  /// Takes every node of `other` and appends it here.
  void splice_from(ready_list& other) noexcept {
    if (other.empty()) return;
    ready_node* first = other.head_.next_;
    ready_node* last = other.head_.prev_;
    first->prev_ = head_.prev_;
    last->next_ = &head_;
    head_.prev_->next_ = first;
    head_.prev_ = last;
    other.head_.prev_ = other.head_.next_ = &other.head_;
  }
  ready_node* pop_front() noexcept {
    if (empty()) return nullptr;
    ready_node* node = head_.next_;
    node->unqueue();
    return node;
  }
  void clear_discarding() noexcept {
    while (ready_node* node = pop_front()) node->discard();
  }

 private:
  struct sentinel final : ready_node {
    void run_ready() override {}
  };
  sentinel head_;
};

}  // namespace corio::detail
