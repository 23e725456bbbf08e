// lib/adopted_fd.hpp - what a stream constructor checks and sets on an fd it is given.
#pragma once

#include <fcntl.h>

#include <stdexcept>
#include <string>

namespace corio::detail {

/// Returns `fd` made non-blocking (and close-on-exec if `cloexec`), for a stream to adopt.
/// Throws std::invalid_argument naming `who` if `fd` is not an open file descriptor (-1, or a
/// number already closed): the stream would otherwise look open and fail only at its first
/// operation, with EBADF. The check costs nothing more: F_GETFL is read to set O_NONBLOCK.
inline int adopt_fd(int fd, const char* who, bool cloexec = false) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) {
    throw std::invalid_argument(std::string(who) + ": fd " + std::to_string(fd) +
                                " is not an open file descriptor");
  }
  if ((flags & O_NONBLOCK) == 0) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  if (cloexec) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
}

}  // namespace corio::detail
