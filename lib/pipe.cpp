#include "corio/pipe.hpp"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "adopted_fd.hpp"

namespace corio {

pipe_stream::pipe_stream(int fd, stream_options options)
    : stream(detail::adopt_fd(fd, "pipe_stream", /*cloexec=*/true), transport_kind::pipe, options) {
}

std::pair<pipe_stream, pipe_stream> make_pipe(stream_options options) {
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) {
    int err = errno;
    throw error(std::string("make_pipe: pipe2 failed: ") + std::strerror(err),
                std::error_code(err, std::generic_category()));
  }
  pipe_stream first;
  try {
    first = pipe_stream(fds[0], options);
  } catch (...) {  // B13: fds[0] was closed by the failed adoption; fds[1] is ours
    ::close(fds[1]);
    throw;
  }
  return {std::move(first), pipe_stream(fds[1], options)};
}

}  // namespace corio
