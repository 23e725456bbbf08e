// corio-info: prints what this machine offers corio (kernel, io_uring, fallback reason).
// Paste its output into bug reports.
#include <corio/diagnostics.hpp>
#include <cstdio>

int main() {
  std::fputs(corio::diagnostics().c_str(), stdout);
  return 0;
}
