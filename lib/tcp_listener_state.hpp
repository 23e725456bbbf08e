// The state of a tcp_listener, shared by lib/tcp.cpp (TCP, accept, close) and
// lib/unix_socket.cpp (bind_unix).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "corio/detail/io_op.hpp"
#include "corio/tcp.hpp"

namespace corio {

class event_loop;

struct tcp_listener::state {
  int fd = -1;
  endpoint bound;
  std::vector<detail::io_op*> pending_accepts;
  event_loop* loop = nullptr;
  // The last accept found a connection waiting: more may be queued behind it (a burst), so
  // the next accept tries accept4() at once instead of waiting a loop turn for the backend.
  // The first EAGAIN or error turns this off again, and every 64th accept of a streak goes
  // through the backend anyway so that a flood of connects cannot starve the rest of the loop.
  bool backlog_hot = false;
  unsigned direct_accepts = 0;

  // A unix listener (bind_unix): the path as given ("@name" for an abstract one), and, when
  // close() should remove the socket file, the identity of the file bind() made, so that
  // close() leaves alone a socket another server has put at the path since.
  std::string unix_path;
  bool unlink_on_close = false;
  dev_t unix_device = 0;
  ino_t unix_inode = 0;
};

/// Removes a unix listener's socket file if unlink_on_close asks and the path still names
/// the socket it made (lib/unix_socket.cpp). Called by tcp_listener::close().
void unlink_unix_socket(const tcp_listener::state& s) noexcept;

}  // namespace corio
