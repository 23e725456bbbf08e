#include "corio/errors.hpp"

namespace corio {
namespace {

class corio_category_impl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "corio"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::unsatisfiable_read:
        return "unsatisfiable read: delimiter not found within max_bytes";
      case errc::buffer_full:
        return "read buffer exceeded max_buffer_size";
      case errc::tls_truncated:
        return "TLS stream truncated: peer closed without close_notify";
      case errc::timed_out:
        return "timed out";
    }
    return "unknown corio error";
  }
};

}  // namespace

const std::error_category& corio_category() noexcept {
  static const corio_category_impl category;
  return category;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), corio_category()}; }

}  // namespace corio
