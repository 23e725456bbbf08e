#include "corio/loop.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <stdexcept>

#include "backend/backend.hpp"

namespace corio {
namespace {

thread_local event_loop* current_loop = nullptr;

using timer_key = std::pair<std::chrono::steady_clock::time_point, std::uint64_t>;
using due_registry = std::map<timer_key, detail::ready_node*>;

/// A posted or timer callback waiting in the ready queue; deletes itself after running.
/// A due timer callback is also listed in the loop's registry of due callbacks under its
/// timer key, so that timer_handle::cancel() can still withdraw it before it runs (S62).
class callback_node final : public detail::ready_node, public detail::pooled {
 public:
  callback_node(event_loop& loop, std::function<void()> fn) : loop_(loop), fn_(std::move(fn)) {}
  callback_node(event_loop& loop, std::function<void()> fn, due_registry& registry,
                const timer_key& key)
      : loop_(loop), fn_(std::move(fn)), registry_(&registry), key_(key) {
    registry_->emplace(key_, this);
  }
  ~callback_node() { unregister(); }
  void run_ready() override {
    std::unique_ptr<callback_node> self(this);
    // Why: from here on the timer has run; a cancel() from inside fn_ must not delete us.
    unregister();
    try {
      fn_();
    } catch (...) {
      loop_.report_exception(std::current_exception());
    }
  }
  void discard() noexcept override { delete this; }
  void set_callback(std::function<void()>&& fn) noexcept { fn_ = std::move(fn); }

 private:
  void unregister() noexcept {
    if (registry_ != nullptr) std::exchange(registry_, nullptr)->erase(key_);
  }
  event_loop& loop_;
  std::function<void()> fn_;
  due_registry* registry_ = nullptr;
  timer_key key_{};
};

void default_exception_handler(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "corio: exception escaped a spawned task or callback: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "corio: unknown exception escaped a spawned task or callback\n");
  }
}

}  // namespace

struct event_loop::posted_queue {
  std::mutex mutex;
  std::vector<std::function<void()>> callbacks;
  std::atomic<bool> nonempty{false};
};

namespace detail {

void schedule(ready_node& node) noexcept {
  event_loop* loop = current_loop;
  assert(loop != nullptr && "corio: an operation completed on a thread without an event_loop");
  loop->schedule(node);
}

void deliver_completion(event_loop& loop, io_op& op) {
  if (!op.multishot) op.in_flight = false;  // a multishot op's backend says when it ends
  ++loop.mutable_stats().completions;
  if (op.handler != nullptr) {
    op.handler->on_io_complete(op);
    return;
  }
  if (op.in_flight) return;  // an orphaned multishot op: its last completion comes later
  // Orphan: nobody waits. A connection accepted for nobody is closed, not leaked.
  if (op.kind == op_kind::accept && op.result >= 0) {
    loop.backend_impl().forget_fd(op.result);
    ::close(op.result);
  }
  // Close the fd of a closed transport once its last op is done.
  if (deferred_close* dc = op.close_after) {
    if (--dc->remaining == 0) {
      loop.backend_impl().forget_fd(dc->fd);
      ::close(dc->fd);
      delete dc;
    }
  }
  loop.release_op(&op);
}

const char* op_kind_name(op_kind kind) noexcept {
  switch (kind) {
    case op_kind::recv:
      return "recv";
    case op_kind::send:
      return "send";
    case op_kind::sendmsg:
      return "sendmsg";
    case op_kind::read:
      return "read";
    case op_kind::write:
      return "write";
    case op_kind::accept:
      return "accept";
    case op_kind::connect:
      return "connect";
    case op_kind::poll:
      return "poll";
    case op_kind::timeout:
      return "timeout";
    case op_kind::cancel:
      return "cancel";
    case op_kind::count_:
      break;
  }
  return "?";
}

}  // namespace detail

const char* to_string(backend b) noexcept {
  switch (b) {
    case backend::automatic:
      return "automatic";
    case backend::io_uring:
      return "io_uring";
    case backend::epoll:
      return "epoll";
  }
  return "?";
}

backend parse_backend(std::string_view name) {
  if (name == "io_uring" || name == "uring") return backend::io_uring;
  if (name == "epoll") return backend::epoll;
  if (name == "automatic" || name == "auto") return backend::automatic;
  throw std::invalid_argument("corio::parse_backend: unknown backend \"" + std::string(name) +
                              "\" (expected io_uring, epoll or automatic)");
}

void timer_handle::cancel() noexcept {
  if (loop_ != nullptr) loop_->cancel_timer(*this);
}

event_loop::event_loop(loop_options options)
    : options_(options), posted_(std::make_unique<posted_queue>()) {
  if (options_.backend == backend::epoll) {
    backend_ = detail::make_epoll_backend(*this, options_);
  } else {
    try {
      backend_ = detail::make_uring_backend(*this, options_);
    } catch (const backend_unavailable_error& e) {
      if (options_.backend == backend::io_uring) throw;
      static std::once_flag said_once;
      std::call_once(said_once, [&] {
        std::fprintf(stderr, "corio: %s; using the epoll backend\n", e.what());
      });
      backend_ = detail::make_epoll_backend(*this, options_);
    }
  }
  backend_ = detail::maybe_wrap_backend(*this, std::move(backend_));
  previous_current_ = std::exchange(current_loop, this);
  // Why: a write to a pipe whose reader is gone raises SIGPIPE (sockets use MSG_NOSIGNAL;
  // pipes have no such flag). Blocking it in this thread, never process-wide, turns it into
  // the EPIPE that the stream reports (S56); io_uring's workers block all signals already.
  sigset_t pipe_only;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  sigset_t previous_mask;
  if (pthread_sigmask(SIG_BLOCK, &pipe_only, &previous_mask) == 0) {
    unblock_sigpipe_on_exit_ = !sigismember(&previous_mask, SIGPIPE);
  }
}

event_loop::~event_loop() {
  if (!backend_->usable_on_this_thread()) {
    abandon_on_foreign_thread();
    return;
  }
  event_loop* previous = current_loop;
  current_loop = this;  // Why: destructors below may schedule or submit on this loop.
  // Destroy detached tasks: their frames cancel their operations (orphaning the io_ops).
  while (roots_ != nullptr) {
    detail::root_promise* root = roots_;
    root->report_errors = false;
    std::coroutine_handle<detail::root_promise>::from_promise(*root).destroy();
  }
  ready_.clear_discarding();
  for (auto& [key, entry] : timers_) {
    (void)key;
    entry.node = nullptr;
  }
  timers_.clear();
  // Posted callbacks that never ran are dropped now, while the backend still exists: what
  // they capture (a stream handed over with post_to) closes its fd and cancels its ops as it
  // goes. Their destructors may post again; bounded, in case another thread keeps posting.
  for (int round = 0; round < 100; ++round) {
    std::vector<std::function<void()>> dropped;
    {
      std::lock_guard lock(posted_->mutex);
      dropped.swap(posted_->callbacks);
      posted_->nonempty.store(false, std::memory_order_release);
    }
    const bool any = !dropped.empty() || draining_next_ < draining_.size();
    dropped.clear();
    draining_.clear();
    draining_next_ = 0;
    ready_.clear_discarding();
    if (!any) break;
  }
  // Wait (bounded) for every op the kernel still holds, so that none writes into freed memory.
  auto deadline = clock::now() + std::chrono::seconds(5);
  while (backend_->in_flight() > 0 && clock::now() < deadline) {
    backend_->wait(std::chrono::milliseconds(10));
    ready_.clear_discarding();
  }
  if (backend_->in_flight() > 0) {
    std::fprintf(stderr, "corio: event_loop destroyed with %zu operations still in flight\n",
                 backend_->in_flight());
  }
  {
    std::lock_guard lock(posted_->mutex);  // no post() is waking the backend any more
    backend_.reset();
  }
  for (detail::io_op* op : op_pool_) delete op;
  if (unblock_sigpipe_on_exit_) {
    // Drop a SIGPIPE left pending by a pipe write, then restore the thread's mask.
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    timespec zero{};
    while (sigtimedwait(&pipe_only, nullptr, &zero) == SIGPIPE) {
    }
    pthread_sigmask(SIG_UNBLOCK, &pipe_only, nullptr);
  }
  current_loop = (previous == this) ? previous_current_ : previous;
}

void event_loop::abandon_on_foreign_thread() noexcept {
  // Why: every cancel or wait would fail with -EEXIST from this thread, and destroying the
  // tasks or buffers would free memory the kernel may still write (a receive into a provided
  // buffer, a send reading a frame). Leaking them is the memory-safe answer to the misuse.
  std::fprintf(stderr,
               "corio: an io_uring event_loop was destroyed on a thread other than the one that "
               "created it; its tasks, buffers and operations in flight (%zu) are leaked (create, "
               "run and destroy a loop on one thread)\n",
               backend_->in_flight());
  backend_.release()->abandon();
  roots_ = nullptr;
  ready_.clear_discarding();
  for (auto& [key, entry] : timers_) {
    (void)key;
    entry.node = nullptr;
  }
  {
    // Callbacks that never ran may hold streams, whose destructors would use the backend.
    std::lock_guard lock(posted_->mutex);
    new std::vector<std::function<void()>>(std::move(posted_->callbacks));
    posted_->callbacks.clear();
  }
  new std::vector<std::function<void()>>(std::move(draining_));
  draining_.clear();
  op_pool_.clear();
  if (current_loop == this) current_loop = nullptr;
}

backend event_loop::backend() const noexcept { return backend_->kind(); }

void event_loop::spawn(task<void> work) {
  auto root = detail::spawn_root(std::move(work));
  add_root(root.handle.promise());
  schedule(root.handle.promise());
}

void event_loop::post(std::function<void()> fn) {
  // Why the wake happens under the lock: the loop's destructor takes the same lock before it
  // frees the backend, so a post() that began before the loop stopped never touches a freed
  // eventfd (found by TSan with run_per_core's stop_all from another thread).
  std::lock_guard lock(posted_->mutex);
  posted_->callbacks.push_back(std::move(fn));
  if (!posted_->nonempty.exchange(true, std::memory_order_acq_rel) && backend_) backend_->wake();
}

void event_loop::drain_posted() {
  if (draining_next_ == draining_.size()) {
    if (!posted_->nonempty.load(std::memory_order_acquire)) return;
    draining_.clear();
    draining_next_ = 0;
    {
      std::lock_guard lock(posted_->mutex);
      draining_.swap(posted_->callbacks);  // the posters get the spare capacity
      posted_->nonempty.store(false, std::memory_order_release);
    }
    stats_.posts += draining_.size();
  }
  // Why a member and an index: if a node cannot be allocated (std::bad_alloc, B13), the
  // callbacks not yet queued stay here, in order, for the next turn instead of being lost.
  // (The allocation happens before the argument is moved from.)
  while (draining_next_ < draining_.size()) {
    auto* node = new callback_node(*this, std::move(draining_[draining_next_]));
    ++draining_next_;
    schedule(*node);
  }
}

namespace detail {
std::chrono::steady_clock::time_point deadline_after(std::chrono::nanoseconds delay) noexcept {
  using time_point = std::chrono::steady_clock::time_point;
  const time_point now = std::chrono::steady_clock::now();
  // Why: now + nanoseconds::max() overflows into the past, and "no limit" would fire at once.
  if (delay >= time_point::max() - now) return time_point::max();
  // The earliest deadline is the clock's epoch, not time_point::min(): the loop subtracts now
  // from deadlines, which must not overflow either.
  if (delay <= time_point() - now) return time_point();
  return now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(delay);
}
}  // namespace detail

timer_handle event_loop::call_later(std::chrono::nanoseconds delay, std::function<void()> fn) {
  timer_handle::key key{detail::deadline_after(delay), timer_sequence_++};
  timers_.emplace(key, timer_entry{std::move(fn), nullptr});
  return timer_handle(this, key);
}

timer_handle event_loop::add_timer(clock::duration delay, detail::ready_node& node) {
  timer_handle::key key{detail::deadline_after(delay), timer_sequence_++};
  timers_.emplace(key, timer_entry{{}, &node});
  return timer_handle(this, key);
}

namespace {
/// A deadline as the timer map holds it: not before the clock's epoch, since the loop
/// subtracts now from deadlines (time_point::min() would overflow; see deadline_after).
event_loop::clock::time_point held_deadline(event_loop::clock::time_point deadline) noexcept {
  return std::max(deadline, event_loop::clock::time_point());
}
}  // namespace

timer_handle event_loop::call_at(clock::time_point deadline, std::function<void()> fn) {
  timer_handle::key key{held_deadline(deadline), timer_sequence_++};
  timers_.emplace(key, timer_entry{std::move(fn), nullptr});
  return timer_handle(this, key);
}

timer_handle event_loop::add_timer_at(clock::time_point deadline, detail::ready_node& node) {
  timer_handle::key key{held_deadline(deadline), timer_sequence_++};
  timers_.emplace(key, timer_entry{{}, &node});
  return timer_handle(this, key);
}

void event_loop::cancel_timer(const timer_handle& handle) noexcept {
  if (timers_.erase(handle.key_) != 0) return;
  // Already due but not run yet (queued in this iteration's batch): withdraw it (S62).
  if (auto it = due_callbacks_.find(handle.key_); it != due_callbacks_.end()) {
    it->second->discard();  // unqueues and unregisters itself
  }
}

void event_loop::fire_due_timers() {
  auto now = clock::now();
  while (!timers_.empty() && timers_.begin()->first.first <= now) {
    auto it = timers_.begin();
    detail::ready_node* node = it->second.node;
    if (node == nullptr) {
      // Made before the timer leaves the map: if this throws (std::bad_alloc, B13) the timer
      // stays and fires on a later turn instead of being lost.
      auto* callback = new callback_node(*this, {}, due_callbacks_, it->first);
      callback->set_callback(std::move(it->second.callback));
      node = callback;
    }
    timers_.erase(it);
    ++stats_.timers_fired;
    schedule(*node);
  }
}

std::optional<event_loop::clock::duration> event_loop::wait_timeout() const {
  if (!ready_.empty() || stopping_ || posted_->nonempty.load(std::memory_order_acquire) ||
      draining_next_ < draining_.size() || backend_->has_ready_completions()) {
    return clock::duration::zero();
  }
  if (timers_.empty()) return std::nullopt;
  auto until = timers_.begin()->first.first - clock::now();
  return until < clock::duration::zero() ? clock::duration::zero() : until;
}

void event_loop::run_turn_hooks() {
  if (turn_hooks_ == nullptr) return;
  // Run the hooks registered so far; one registered while they run waits for the next turn.
  running_hooks_ = std::exchange(turn_hooks_, nullptr);
  turn_hooks_last_ = nullptr;
  while (detail::turn_hook* hook = running_hooks_) {
    running_hooks_ = hook->next_hook_;
    hook->next_hook_ = nullptr;
    hook->registered_ = false;
    hook->before_wait();
  }
}

void event_loop::run_once() {
  ++stats_.iterations;
  // Writes queued during the last turn leave now, gathered (architecture.md).
  run_turn_hooks();
  auto timeout = wait_timeout();
  backend_->wait(timeout ? std::optional<std::chrono::nanoseconds>(*timeout) : std::nullopt);
  drain_posted();
  fire_due_timers();
  // S59: run exactly what is queued now; what these callbacks queue waits for the next turn.
  detail::ready_list batch;
  batch.splice_from(ready_);
  while (detail::ready_node* node = batch.pop_front()) node->run_ready();
}

void event_loop::run_until(const bool& done) {
  if (!backend_->usable_on_this_thread()) {
    throw std::logic_error(
        "event_loop::run: this loop's io_uring ring belongs to the thread that created the loop "
        "(IORING_SETUP_SINGLE_ISSUER): create, run and destroy a loop on one thread");
  }
  event_loop* previous = std::exchange(current_loop, this);
  stopping_ = false;
  try {
    while (!done && !stopping_) run_once();
    // Writes the finished task queued without awaiting still leave (S4): hand them to the
    // kernel now (io_uring would otherwise hold their SQEs until the loop is entered again);
    // the next run, or the loop's destructor, delivers their completions.
    run_turn_hooks();
    backend_->submit_queued();
  } catch (...) {
    current_loop = previous ? previous : this;
    throw;
  }
  stopping_ = false;
  current_loop = previous ? previous : this;
}

void event_loop::stop() noexcept { stopping_ = true; }

loop_stats event_loop::stats() const noexcept { return stats_; }

void event_loop::set_exception_handler(std::function<void(std::exception_ptr)> handler) {
  exception_handler_ = std::move(handler);
}

void event_loop::report_exception(std::exception_ptr error) noexcept {
  try {
    if (exception_handler_) {
      exception_handler_(error);
    } else {
      default_exception_handler(error);
    }
  } catch (...) {
    std::fprintf(stderr, "corio: the exception handler itself threw\n");
  }
}

event_loop& event_loop::current() {
  if (current_loop == nullptr) {
    throw std::logic_error("corio::event_loop::current: no event loop on this thread");
  }
  return *current_loop;
}

event_loop* event_loop::current_or_null() noexcept { return current_loop; }

detail::io_op* event_loop::acquire_op() {
  detail::io_op* op = nullptr;
  if (op_pool_.empty()) {
    op = new detail::io_op();  // counted only once it exists (std::bad_alloc, B13)
  } else {
    op = op_pool_.back();
    op_pool_.pop_back();
  }
  ++ops_outstanding_;
  return op;
}

void event_loop::release_op(detail::io_op* op) noexcept {
  --ops_outstanding_;
  op->reset();
  try {
    op_pool_.push_back(op);
  } catch (...) {
    delete op;
  }
}

void event_loop::submit(detail::io_op& op) {
  ++stats_.submissions;
  ++stats_.ops_by_kind[static_cast<std::size_t>(op.kind)];
  const bool was_in_flight = op.in_flight;  // a multishot op may still be armed
  op.in_flight = true;
  try {
    backend_->submit(op);
  } catch (...) {
    op.in_flight = was_in_flight;  // B13: not taken (std::bad_alloc); the requester owns it
    throw;
  }
}

void event_loop::orphan(detail::io_op& op) noexcept {
  op.handler = nullptr;
  op.sink = nullptr;
  if (op.in_flight) {
    backend_->cancel(op);
  } else {
    release_op(&op);
  }
}

void event_loop::cancel_now(detail::io_op& op) noexcept {
  if (op.in_flight) backend_->cancel_now(op);
}

void event_loop::close_fd_after(int fd, std::span<detail::io_op* const> in_flight) noexcept {
  int pending = 0;
  for (detail::io_op* op : in_flight) pending += (op != nullptr && op->in_flight) ? 1 : 0;
  if (pending == 0) {
    backend_->forget_fd(fd);
    ::close(fd);
    return;
  }
  auto* dc = new (std::nothrow) detail::deferred_close{fd, pending};
  if (dc == nullptr) {
    // B13: no memory to defer the close: wait until the kernel is done with the ops (their
    // completions still come later), then close now.
    for (detail::io_op* op : in_flight) {
      if (op != nullptr && op->in_flight) backend_->cancel_now(*op);
    }
    backend_->forget_fd(fd);
    ::close(fd);
    return;
  }
  for (detail::io_op* op : in_flight) {
    if (op != nullptr && op->in_flight) op->close_after = dc;
  }
}

void event_loop::add_turn_hook(detail::turn_hook& hook) noexcept {
  if (hook.registered_) return;
  hook.registered_ = true;
  hook.next_hook_ = nullptr;
  if (turn_hooks_last_ != nullptr) {
    turn_hooks_last_->next_hook_ = &hook;
  } else {
    turn_hooks_ = &hook;
  }
  turn_hooks_last_ = &hook;
}

void event_loop::remove_turn_hook(detail::turn_hook& hook) noexcept {
  if (!hook.registered_) return;
  hook.registered_ = false;
  // Registered means: in the pending list, or in the batch run_turn_hooks is running.
  for (detail::turn_hook** list : {&turn_hooks_, &running_hooks_}) {
    detail::turn_hook* previous = nullptr;
    for (detail::turn_hook** slot = list; *slot != nullptr; slot = &(*slot)->next_hook_) {
      if (*slot != &hook) {
        previous = *slot;
        continue;
      }
      *slot = hook.next_hook_;
      if (list == &turn_hooks_ && turn_hooks_last_ == &hook) turn_hooks_last_ = previous;
      hook.next_hook_ = nullptr;
      return;
    }
  }
}

void event_loop::add_root(detail::root_promise& root) noexcept {
  root.loop = this;
  root.next_root = roots_;
  root.prev_root = nullptr;
  if (roots_ != nullptr) roots_->prev_root = &root;
  roots_ = &root;
}

void event_loop::remove_root(detail::root_promise& root) noexcept {
  if (root.prev_root != nullptr) root.prev_root->next_root = root.next_root;
  if (root.next_root != nullptr) root.next_root->prev_root = root.prev_root;
  if (roots_ == &root) roots_ = root.next_root;
  root.loop = nullptr;
}

}  // namespace corio
