#include "corio/io.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "backend/backend.hpp"

namespace corio::io {
namespace {
// Why: Linux moves at most MAX_RW_COUNT (2 GiB - 4 KiB) per call, and io_uring's SQE length
// is 32 bits (a 4 GiB span would become 0); a larger span gets a short count, as with send(2).
constexpr std::size_t max_transfer = 0x7ffff000;
}  // namespace

void operation::await_suspend(std::coroutine_handle<> waiting) {
  waiting_ = waiting;
  loop_ = &event_loop::current();
  detail::io_op& op = *loop_->acquire_op();
  op_ = &op;
  op.kind = params_.kind;
  op.fd = params_.fd;
  op.flags = params_.flags;
  op.handler = this;
  switch (params_.kind) {
    case detail::op_kind::recv:
    case detail::op_kind::read:
      op.length = std::min(params_.into.size(), max_transfer);
      op.sink = this;
      break;
    case detail::op_kind::send:
    case detail::op_kind::write:
      op.source = params_.from.data();
      op.length = std::min(params_.from.size(), max_transfer);
      break;
    case detail::op_kind::sendmsg:
      op.iov.assign(params_.pieces.begin(), params_.pieces.end());
      break;
    case detail::op_kind::connect:
      std::memcpy(&op.address, params_.address,
                  std::min<std::size_t>(params_.address_length, sizeof op.address));
      op.address_length = params_.address_length;
      break;
    case detail::op_kind::timeout:
      op.timeout_ns = params_.timeout_ns;
      break;
    default:
      break;
  }
  loop_->submit(op);
}

std::span<std::byte> operation::prepare(std::size_t max) {
  std::span<std::byte> rest = params_.into.subspan(filled_);
  return rest.first(std::min(max, rest.size()));
}

void operation::on_io_complete(detail::io_op& op) {
  result_ = op.result;
  loop_->release_op(&op);
  op_ = nullptr;
  loop_->schedule(*this);
}

operation::~operation() {
  if (op_ == nullptr) return;
  // The awaiting coroutine is being destroyed with the operation in flight.
  switch (params_.kind) {
    case detail::op_kind::send:
    case detail::op_kind::write:
    case detail::op_kind::sendmsg:
    case detail::op_kind::connect:
    case detail::op_kind::accept:
      // Why: the kernel reads the caller's bytes until the request is gone; those bytes die
      // with the coroutine frame, so cancel synchronously (io_uring rule 1). A connect or
      // accept is cancelled the same way so that its socket can be closed right after.
      loop_->cancel_now(*op_);
      break;
    case detail::op_kind::recv:
    case detail::op_kind::read:
      // On epoll the syscall writes the caller's span directly, but only inside submit or a
      // loop turn, never after a cancel; on io_uring it writes a provided buffer.
      break;
    default:
      break;
  }
  loop_->orphan(*op_);
}

void close(int fd) noexcept {
  if (event_loop* loop = event_loop::current_or_null()) loop->backend_impl().forget_fd(fd);
  ::close(fd);
}

}  // namespace corio::io
