// corio/errors.hpp - the typed errors every corio operation reports.
#pragma once

#include <stdexcept>
#include <string>
#include <system_error>

namespace corio {

/// Error conditions that corio itself defines (OS errors use std::generic_category).
enum class errc {
  unsatisfiable_read = 1,  ///< read_until/read_until_regex: max_bytes exceeded (S16).
  buffer_full,             ///< The read buffer grew past max_buffer_size (S42).
  tls_truncated,           ///< TLS peer closed without close_notify (D10), or during the handshake.
  timed_out,               ///< Reserved: timeouts throw timeout_error, whose code() is empty.
};

/// The category of corio::errc codes ("corio").
const std::error_category& corio_category() noexcept;

/// Makes a std::error_code from a corio::errc.
std::error_code make_error_code(errc e) noexcept;

/// Base of every error corio throws for conditions a caller should handle.
/// Carries a message that says what happened and where, and the underlying code if any.
class error : public std::runtime_error {
 public:
  /// Builds an error with a message and an optional underlying code.
  explicit error(const std::string& what, std::error_code code = {})
      : std::runtime_error(what), code_(code) {}
  /// The underlying error (an OS errno in std::generic_category, or a corio::errc); may be empty.
  const std::error_code& code() const noexcept { return code_; }

 private:
  std::error_code code_;
};

/// An operation on a closed stream; code() is the error that closed it (empty for a clean EOF
/// or close()). Tornado: StreamClosedError(real_error).
class stream_closed_error : public error {
 public:
  using error::error;
};

/// Reserved: corio does not throw it. A delimiter or pattern not found within max_bytes
/// closes the stream, and the read fails with stream_closed_error whose code() is
/// errc::unsatisfiable_read (S16).
class unsatisfiable_read_error : public error {
 public:
  using error::error;
};

/// A write would exceed max_write_buffer_size (S31).
class stream_buffer_full_error : public error {
 public:
  using error::error;
};

/// event_loop::run: stop() was called before the task finished (the task was destroyed).
class stopped_error : public error {
 public:
  using error::error;
};

/// A deadline given to with_timeout (or an operation's timeout option) expired.
class timeout_error : public error {
 public:
  using error::error;
};

/// A TLS failure: OpenSSL's reason, and the certificate verification result if any.
class tls_error : public error {
 public:
  using error::error;
};

/// A regular expression given to read_until_regex did not compile (D8).
class regex_error : public error {
 public:
  using error::error;
};

/// The requested event-loop backend cannot be used on this machine.
class backend_unavailable_error : public error {
 public:
  using error::error;
};

/// A subprocess exited with a non-zero status where success was required.
class called_process_error : public error {
 public:
  /// Builds the error for a process that exited with `returncode` (negative: killed by signal).
  called_process_error(const std::string& what, int returncode)
      : error(what), returncode_(returncode) {}
  /// Exit status: the exit code, or -N when killed by signal N.
  int returncode() const noexcept { return returncode_; }

 private:
  int returncode_;
};

}  // namespace corio

/// @cond INTERNAL
template <>
struct std::is_error_code_enum<corio::errc> : std::true_type {};
/// @endcond
