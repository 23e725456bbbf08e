// The fault-injecting backend (tests only): see fault_backend.hpp.
#include "backend/fault_backend.hpp"

#include <errno.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <unordered_map>
#include <utility>
#include <vector>

namespace corio::detail {
namespace {

thread_local std::shared_ptr<fault_plan> installed_plan;

bool is_data_op(op_kind kind) {
  switch (kind) {
    case op_kind::recv:
    case op_kind::read:
    case op_kind::send:
    case op_kind::write:
    case op_kind::sendmsg:
      return true;
    default:
      return false;
  }
}

bool is_input(op_kind kind) { return kind == op_kind::recv || kind == op_kind::read; }

class fault_backend final : public backend_base, io_handler, multishot_faults {
 public:
  fault_backend(event_loop& loop, std::unique_ptr<backend_base> inner,
                std::shared_ptr<fault_plan> plan)
      : loop_(loop), inner_(std::move(inner)), plan_(std::move(plan)), rng_(plan_->seed) {
    if (plan_->multishot) inner_->set_multishot_faults(this);
  }

  ~fault_backend() override {
    if (inner_) inner_->set_multishot_faults(nullptr);
    // The loop's destructor waited (bounded) for in_flight() to reach 0; whatever is left
    // here was never handed to the kernel, so it only needs to be returned to the pool.
    for (auto& h : held_) release_leftover(*h.op);
    for (auto& d : deferred_) release_leftover(*d.op);
    for (io_op* op : ready_) release_leftover(*op);
  }

  corio::backend kind() const noexcept override { return inner_->kind(); }

  bool supports_multishot_recv() const noexcept override {
    return plan_->multishot && inner_->supports_multishot_recv();
  }

  void submit(io_op& op) override {
    if (trace_)
      std::fprintf(stderr, "submit %p kind %s fd %d\n", (void*)&op, op_kind_name(op.kind), op.fd);
    fault_counts& c = plan_->counts;
    ++c.ops;
    tracked_.erase(&op);  // a stale entry of an orphan that completed unseen
    // A multishot receive (fault_plan::multishot) stays with the real backend across many
    // answers, which this wrapper's one-completion-per-submission model cannot follow.
    if (op.kind == op_kind::timeout || op.kind == op_kind::cancel || op.multishot) {
      inner_->submit(op);  // not faulted, not tracked
      return;
    }
    if (is_data_op(op.kind)) {
      const long long index = static_cast<long long>(c.data_ops++);
      if (index == plan_->fail_at || chance(plan_->error_rate)) {
        ++c.errors;
        op.result = is_input(op.kind) ? -ECONNRESET : (chance(0.5) ? -EPIPE : -ECONNRESET);
        ready_.push_back(&op);
        return;
      }
      if (chance(plan_->short_io)) clamp(op);
    }
    if (chance(plan_->transient)) {
      ++c.transient;
      held_.push_back({turn_ + turns(), &op});
      return;
    }
    issue(op);
  }

  void cancel(io_op& op) noexcept override {
    if (trace_)
      std::fprintf(stderr, "cancel %p kind %s fd %d handler %p\n", (void*)&op,
                   op_kind_name(op.kind), op.fd, (void*)op.handler);
    ++plan_->counts.cancels;
    if (withdraw_held(op)) return;
    if (auto it = tracked_.find(&op); it != tracked_.end()) {
      // Orphaned: its completion goes straight to the loop's orphan path (and the real
      // backend's orphan rules, e.g. never re-issuing it after -EAGAIN, apply).
      if (op.handler == nullptr) it->second.handler = nullptr;
      if (chance(plan_->late_cancel)) {
        ++plan_->counts.late_cancels;
        late_cancels_.push_back({turn_ + turns(), &op, it->second.generation});
      } else {
        inner_->cancel(op);
      }
      return;
    }
    for (auto& d : deferred_) {
      if (d.op == &op && op.handler == nullptr) d.handler = nullptr;
    }
    if (is_pending_here(op)) return;  // completes from ready_ or deferred_ anyway
    inner_->cancel(op);               // untracked (timeouts)
  }

  void cancel_now(io_op& op) noexcept override {
    ++plan_->counts.cancels;
    if (withdraw_held(op)) return;
    if (is_pending_here(op)) return;  // the kernel is done with it already
    inner_->cancel_now(op);
  }

  void forget_fd(int fd) noexcept override {
    // Ops held back on a closing fd complete as cancelled (as epoll's waiters do); they are
    // never issued on an fd number that may be reused.
    for (auto it = held_.begin(); it != held_.end();) {
      if (it->op->fd == fd) {
        it->op->result = -ECANCELED;
        ready_.push_back(it->op);
        it = held_.erase(it);
      } else {
        ++it;
      }
    }
    inner_->forget_fd(fd);
  }

  void wait(std::optional<std::chrono::nanoseconds> timeout) override {
    ++turn_;
    // Held ops whose "retry" is due go to the real backend now.
    for (auto it = held_.begin(); it != held_.end();) {
      if (it->due <= turn_) {
        io_op* op = it->op;
        it = held_.erase(it);
        issue(*op);
      } else {
        ++it;
      }
    }
    for (auto it = late_cancels_.begin(); it != late_cancels_.end();) {
      if (it->due <= turn_) {
        auto t = tracked_.find(it->op);
        // Only if that very submission is still in flight (an orphan completes unseen).
        if (t != tracked_.end() && t->second.generation == it->generation && it->op->in_flight) {
          inner_->cancel(*it->op);
        }
        it = late_cancels_.erase(it);
      } else {
        ++it;
      }
    }
    std::vector<io_op*> now;
    now.swap(ready_);
    std::vector<deferred> late;
    for (auto it = deferred_.begin(); it != deferred_.end();) {
      if (it->due <= turn_) {
        late.push_back(*it);
        it = deferred_.erase(it);
      } else {
        ++it;
      }
    }
    bool busy = !now.empty() || !late.empty() || !held_.empty() || !deferred_.empty() ||
                !late_cancels_.empty();
    inner_->wait(busy ? std::optional<std::chrono::nanoseconds>(std::chrono::nanoseconds::zero())
                      : timeout);
    for (io_op* op : now) deliver_completion(loop_, *op);
    for (deferred& d : late) {
      // op.handler is still `this` unless orphan() cleared it meanwhile (also while this
      // batch was delivered: a handler above may have closed the op's stream).
      if (d.op->handler != nullptr) d.op->handler = d.handler;
      deliver_completion(loop_, *d.op);
    }
  }

  // The faults of the real backend's multishot receives (multishot_faults).
  std::size_t answer_limit(const io_op&, std::size_t limit) noexcept override {
    fault_counts& c = plan_->counts;
    ++c.multishot_answers;
    if (limit <= 1 || !chance(plan_->short_io)) return limit;
    ++c.short_io;
    if (chance(plan_->one_byte)) {
      ++c.one_byte;
      return 1;
    }
    return std::uniform_int_distribution<std::size_t>(1, limit - 1)(rng_);
  }

  int end_multishot(const io_op&) noexcept override {
    fault_counts& c = plan_->counts;
    if (chance(plan_->multishot_error < 0 ? plan_->error_rate : plan_->multishot_error)) {
      ++c.errors;
      ++c.multishot_ends;
      return -ECONNRESET;
    }
    if (!chance(plan_->multishot_end)) return 0;
    ++c.multishot_ends;
    return chance(0.5) ? -ECANCELED : -ENOBUFS;
  }

  bool has_ready_completions() const noexcept override {
    return !ready_.empty() || !held_.empty() || !deferred_.empty() || !late_cancels_.empty() ||
           inner_->has_ready_completions();
  }

  void wake() noexcept override { inner_->wake(); }
  void submit_queued() noexcept override { inner_->submit_queued(); }
  bool usable_on_this_thread() const noexcept override { return inner_->usable_on_this_thread(); }
  void abandon() noexcept override { inner_.release()->abandon(); }

  std::size_t in_flight() const noexcept override {
    return inner_->in_flight() + held_.size() + deferred_.size() + ready_.size();
  }

 private:
  struct tracking {
    io_handler* handler = nullptr;  // the requester's handler (nullptr once orphaned)
    std::uint64_t generation = 0;
  };
  struct held {
    std::uint64_t due;
    io_op* op;
  };
  struct deferred {
    std::uint64_t due;
    io_op* op;
    io_handler* handler;
  };
  struct late_cancel {
    std::uint64_t due;
    io_op* op;
    std::uint64_t generation;
  };

  // The real backend completed an op we issued (deliver_completion already counted it and
  // cleared in_flight).
  void on_io_complete(io_op& op) override {
    if (trace_)
      std::fprintf(stderr, "complete %p kind %s fd %d res %d\n", (void*)&op, op_kind_name(op.kind),
                   op.fd, op.result);
    auto it = tracked_.find(&op);
    io_handler* handler = it != tracked_.end() ? it->second.handler : nullptr;
    if (it != tracked_.end()) tracked_.erase(it);
    if (chance(plan_->late_completion)) {
      ++plan_->counts.late_completions;
      op.in_flight = true;  // still ours: an orphan() meanwhile must go through cancel()
      op.handler = this;    // orphan() overwrites it with nullptr: cancel() notices
      deferred_.push_back({turn_ + turns(), &op, handler});
      return;
    }
    op.handler = handler;
    if (handler != nullptr) {
      handler->on_io_complete(op);
    } else {
      deliver_completion(loop_, op);  // orphan: free it (and close what it owns)
    }
  }

  void issue(io_op& op) {
    if (op.handler == nullptr) {  // orphaned while held back: never issue it
      op.result = -ECANCELED;
      ready_.push_back(&op);
      return;
    }
    tracked_[&op] = tracking{op.handler, ++generation_};
    op.handler = this;
    inner_->submit(op);
  }

  bool withdraw_held(io_op& op) {
    for (auto it = held_.begin(); it != held_.end(); ++it) {
      if (it->op == &op) {
        held_.erase(it);
        op.result = -ECANCELED;
        ready_.push_back(&op);
        return true;
      }
    }
    return false;
  }

  bool is_pending_here(const io_op& op) const {
    if (std::find(ready_.begin(), ready_.end(), &op) != ready_.end()) return true;
    for (const auto& d : deferred_) {
      if (d.op == &op) return true;
    }
    return false;
  }

  void release_leftover(io_op& op) noexcept {
    op.handler = nullptr;
    op.in_flight = false;
    if (deferred_close* dc = op.close_after) {
      if (--dc->remaining == 0) {
        ::close(dc->fd);
        delete dc;
      }
    }
    loop_.release_op(&op);
  }

  void clamp(io_op& op) {
    fault_counts& c = plan_->counts;
    std::size_t total = 0;
    if (op.kind == op_kind::sendmsg) {
      for (const iovec& v : op.iov) total += v.iov_len;
    } else {
      total = op.length;
    }
    if (total <= 1) return;
    std::size_t limit = chance(plan_->one_byte)
                            ? 1
                            : std::uniform_int_distribution<std::size_t>(1, total - 1)(rng_);
    ++c.short_io;
    if (limit == 1) ++c.one_byte;
    if (op.kind != op_kind::sendmsg) {
      op.length = limit;
      return;
    }
    std::size_t kept = 0;
    std::size_t i = 0;
    for (; i < op.iov.size() && kept < limit; ++i) {
      std::size_t take = std::min(op.iov[i].iov_len, limit - kept);
      op.iov[i].iov_len = take;
      kept += take;
    }
    op.iov.resize(i);
  }

  bool chance(double p) {
    if (p <= 0) return false;
    return std::uniform_real_distribution<double>(0, 1)(rng_) < p;
  }
  std::uint64_t turns() { return std::uniform_int_distribution<std::uint64_t>(1, 3)(rng_); }

  event_loop& loop_;
  std::unique_ptr<backend_base> inner_;
  std::shared_ptr<fault_plan> plan_;
  std::mt19937_64 rng_;
  bool trace_ = std::getenv("CORIO_FAULT_TRACE") != nullptr;
  std::uint64_t turn_ = 0;
  std::uint64_t generation_ = 0;
  std::unordered_map<io_op*, tracking> tracked_;
  std::vector<held> held_;
  std::vector<deferred> deferred_;
  std::vector<late_cancel> late_cancels_;
  std::vector<io_op*> ready_;
};

}  // namespace

scoped_fault_plan::scoped_fault_plan(std::shared_ptr<fault_plan> plan)
    : previous_(std::exchange(installed_plan, std::move(plan))) {}

scoped_fault_plan::~scoped_fault_plan() { installed_plan = std::move(previous_); }

int fault_setup_attempt(unsigned flags) {
  if (!installed_plan) return 0;
  installed_plan->counts.setup_attempts.push_back(flags);
  return installed_plan->reject_setup ? installed_plan->reject_setup(flags) : 0;
}

std::unique_ptr<backend_base> make_fault_backend(event_loop& loop,
                                                 std::unique_ptr<backend_base> inner,
                                                 std::shared_ptr<fault_plan> plan) {
  return std::make_unique<fault_backend>(loop, std::move(inner), std::move(plan));
}

std::unique_ptr<backend_base> maybe_wrap_backend(event_loop& loop,
                                                 std::unique_ptr<backend_base> inner) {
  if (!installed_plan) return inner;
  return make_fault_backend(loop, std::move(inner), installed_plan);
}

}  // namespace corio::detail
