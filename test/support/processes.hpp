// test/support/processes.hpp - checks that a test left no child process and no fd behind.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace corio::testing {

/// Pids of the processes whose parent is this process (scans /proc/<pid>/stat), zombies
/// included.
std::vector<pid_t> child_processes();

/// True if this process has no child at all, running or zombie:
/// waitid(P_ALL, 0, WEXITED | WNOHANG | WNOWAIT) fails with ECHILD. Reaps nothing.
bool no_children_left();

/// "pid 123 (sleep) state Z, ..." for the children listed, for failure messages.
std::string describe_processes(const std::vector<pid_t>& pids);

/// The fds open in this process, as "0 -> /dev/pts/0" lines (for failure messages).
std::string describe_open_fds();

}  // namespace corio::testing
