// corio/pipe.hpp - streams over pipe fds.
#pragma once

#include <utility>

#include "corio/stream.hpp"

namespace corio {

/// A stream over one pipe fd, usually used in one direction (S56). EOF closes the stream;
/// writing with no reader left fails with stream_closed_error{EPIPE}. Closing closes the fd.
/// On the write end (an O_WRONLY fd), a read throws std::logic_error, and a close callback
/// runs when a write finds the reader gone or on close(), not when the reader goes while
/// nothing is written (no read can watch a write-only fd).
class pipe_stream : public stream {
 public:
  /// An empty stream; assign one over a pipe fd before use.
  pipe_stream() noexcept = default;
  /// Adopts `fd` (made non-blocking and close-on-exec); the stream owns it. Throws
  /// std::invalid_argument if `fd` is not an open file descriptor (-1, or one already
  /// closed). Must be called on a thread running an event_loop.
  explicit pipe_stream(int fd, stream_options options = {});
};

/// A new pipe as {read end, write end}. Must be called on a thread running an event_loop.
std::pair<pipe_stream, pipe_stream> make_pipe(stream_options options = {});

}  // namespace corio
