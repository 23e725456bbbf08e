// Smallest downstream program: proves headers, library and link deps resolve.
#include <corio/version.hpp>

#include <cstdio>

int main() {
  std::printf("corio %s (major %d)\n", corio::version_string, corio::version_major());
  return 0;
}
