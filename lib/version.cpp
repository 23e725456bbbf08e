#include <corio/version.hpp>

namespace corio {

int version_major() noexcept { return 0; }

}  // namespace corio
