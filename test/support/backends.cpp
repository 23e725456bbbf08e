#include "support/backends.hpp"

#include <dirent.h>
#include <sys/utsname.h>

#include <cstdio>
#include <cstdlib>

namespace corio::testing {

int open_fd_count() {
  int count = 0;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (::readdir(dir) != nullptr) ++count;
    ::closedir(dir);
    count -= 3;  // ".", ".." and the directory's own fd
  }
  return count;
}

bool multishot_expected(corio::backend b) {
  if (b != corio::backend::io_uring) return false;
  const char* off = std::getenv("CORIO_NO_MULTISHOT");
  if (off != nullptr && *off != '\0' && *off != '0') return false;
  utsname u{};
  int major = 0;
  return ::uname(&u) == 0 && std::sscanf(u.release, "%d", &major) == 1 && major >= 6;
}

}  // namespace corio::testing
