// corio/tcp.hpp - socket streams and listeners: TCP, unix domain sockets by path, socket pairs.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "corio/stream.hpp"
#include "corio/task.hpp"

namespace corio {

class tls_context;
class tls_stream;

/// An IP address and port, as text ("127.0.0.1", "::1").
struct endpoint {
  std::string address;     ///< numeric address
  std::uint16_t port = 0;  ///< port in host order
  /// "127.0.0.1:80" or "[::1]:80".
  std::string to_string() const;
};

/// Options of tcp_stream::connect.
struct connect_options {
  /// One deadline for resolution and connection, and for the handshake of
  /// tls_stream::connect (0: none); expiry throws timeout_error (S51).
  std::chrono::nanoseconds timeout{0};
  stream_options stream{};  ///< options of the resulting stream
  bool nodelay = false;     ///< set TCP_NODELAY once connected
  /// Happy Eyeballs' connection attempt delay (RFC 8305 §5): how long an attempt runs alone
  /// before the next address is tried alongside it. An attempt that fails starts the next
  /// one at once. 250 ms is RFC 8305's recommendation (Tornado waits 0.3 s). 0 (or less)
  /// starts every address at once; nanoseconds::max() tries one address at a time, the next
  /// only after a failure.
  std::chrono::nanoseconds happy_eyeballs_delay = std::chrono::milliseconds(250);
};

/// Options of tcp_listener::bind.
struct listen_options {
  int backlog = 4096;         ///< listen() backlog
  bool reuse_address = true;  ///< SO_REUSEADDR
  bool reuse_port = false;    ///< SO_REUSEPORT: one listener per loop/thread on the same port
};

/// Options of tcp_listener::bind_unix.
struct unix_listen_options {
  int backlog = 4096;  ///< listen() backlog
  /// Permissions of the socket file, set with chmod() between bind() and listen(), so that no
  /// client connects before they apply (0660: owner and group may connect; connecting needs
  /// write permission). -1 leaves what the umask gave. std::invalid_argument with an
  /// abstract name, which has no file.
  int mode = -1;
  /// Remove the socket file when the listener is closed or destroyed, if the path still
  /// names the socket this listener made (a socket another server put there since is left
  /// alone). Tornado's bind_unix_socket leaves the file; a process that forks after
  /// binding and closes the listener in the child should turn this off.
  bool unlink_on_close = true;
};

/// The process at the other end of a unix socket, as the kernel recorded it when the
/// connection was made (SO_PEERCRED).
struct unix_credentials {
  int pid = 0;       ///< process id
  unsigned uid = 0;  ///< effective user id
  unsigned gid = 0;  ///< effective group id
};

/// A stream over a connected TCP or unix domain socket (tcp_listener::accept,
/// tcp_stream::connect, tcp_stream::connect_unix, stream_pair).
class tcp_stream : public stream {
 public:
  /// An empty stream; assign a connected or accepted one before use.
  tcp_stream() noexcept = default;
  /// Adopts a connected socket fd (made non-blocking); the stream owns and closes it.
  /// Throws std::invalid_argument if `connected_fd` is not an open file descriptor (-1, or
  /// one already closed). Must be called on a thread running an event_loop.
  explicit tcp_stream(int connected_fd, stream_options options = {});

  /// Resolves `host` without blocking the loop (a numeric address is used at once; a name is
  /// resolved on a helper thread, one per call) and connects to the first address that
  /// accepts (S46, S51), trying them Happy Eyeballs style (RFC 8305; Tornado's TCPClient):
  ///  - order: the first address's family first, then IPv6 and IPv4 alternate, each family
  ///    in the resolver's order (RFC 8305 §4);
  ///  - the next address is tried as soon as an attempt fails, or options.happy_eyeballs_delay
  ///    (250 ms) after the latest attempt started, whichever is first; attempts already
  ///    running go on, so an address that drops SYNs (a broken IPv6 route) costs one delay,
  ///    not the kernel's ~2 minutes;
  ///  - the first connection wins; the other attempts are cancelled and their sockets closed.
  /// Tornado keeps one attempt per family in flight and waits 0.3 s only before the second
  /// family; corio's delay also applies between addresses of one family.
  /// Failure: stream_closed_error whose code() is the OS error of the attempt that failed
  /// last (ECONNREFUSED, ENETUNREACH, …) (S47); for a name that does not resolve, one whose
  /// code() is in resolver_category() (EAI_NONAME: no such name; EAI_AGAIN: the DNS server
  /// did not answer, worth retrying); timeout_error once options.timeout (one deadline for
  /// resolution and every attempt) expires. Destroying the task cancels every
  /// attempt and closes its socket.
  [[nodiscard]] static task<tcp_stream> connect(std::string_view host, std::uint16_t port,
                                                connect_options options = {});
  /// Connects to the first of `endpoints` that accepts, exactly as connect(host, port,
  /// options) does with the addresses a name resolves to (Happy Eyeballs, families
  /// interleaved), but without a resolver: for a caller that has its own (a DNS library, a
  /// cached or configured address list). Each endpoint is a numeric address ("192.0.2.7",
  /// "2001:db8::7", also "[2001:db8::7]") with its own port; the list is copied at the call.
  /// Throws std::invalid_argument at the call if the list is empty or an address is not
  /// numeric. Failure, timeout and cancellation as connect(host, port).
  [[nodiscard]] static task<tcp_stream> connect(std::span<const endpoint> endpoints,
                                                connect_options options = {});
  /// Connects to the unix domain stream socket at `path`: a file path or an abstract name
  /// (`@name`), written as for tcp_listener::bind_unix (std::invalid_argument at the call for
  /// an empty or too long path). A non-blocking unix connect succeeds or fails at once, at
  /// the call, without blocking the loop; only when the listener's backlog is full does it
  /// wait until the server accepts (tried again after 1 ms, doubling up to 50 ms: no event
  /// signals room) or options.timeout expires (timeout_error).
  /// Failure: stream_closed_error naming the path, whose code() is the OS error: ENOENT (no
  /// such file or abstract name), ECONNREFUSED (a socket file nobody listens on: a server
  /// that crashed), EACCES (no write permission on the socket file), ENOTSOCK... (S47).
  /// options.stream applies; nodelay and happy_eyeballs_delay have no meaning here.
  /// Destroying the task cancels the attempt and closes its socket.
  [[nodiscard]] static task<tcp_stream> connect_unix(std::string_view path,
                                                     connect_options options = {});

  /// Starts TLS on this idle connection (no pending read or write, nothing buffered: S52,
  /// else std::logic_error; on a closed stream stream_closed_error with the reason it closed,
  /// where Tornado raises its "not idle" ValueError) and completes with the TLS stream once
  /// the handshake and the certificate checks succeeded (S53). The handshake starts at the
  /// call. `server_hostname` is sent as SNI and checked against the certificate; it is
  /// required when the context checks host names (std::invalid_argument otherwise, S55).
  /// Failure: the raw tls_error.
  /// The tcp_stream is empty afterwards. The new stream keeps the options and close callback.
  [[nodiscard]] task<tls_stream> start_tls(tls_context& context,
                                           std::string_view server_hostname = {}) &&;

  /// Sets TCP_NODELAY; does nothing on unix sockets or closed streams (S49).
  void set_nodelay(bool enabled) noexcept;
  /// The local address, or an empty endpoint for unix sockets or closed streams.
  endpoint local_endpoint() const;
  /// The peer's address, or an empty endpoint for unix sockets or closed streams.
  endpoint remote_endpoint() const;
  /// The peer process's pid, uid and gid on a unix socket (SO_PEERCRED: the connecting
  /// process as of connect(), the listening one as of listen(), or the socketpair() caller);
  /// std::nullopt on a TCP socket or a closed stream. A server behind a unix socket may use
  /// it to authorize clients (the kernel vouches for it; the pid may since have exited).
  std::optional<unix_credentials> peer_credentials() const;
};

/// A listening TCP or unix domain socket. Accepting is a coroutine; binding is immediate.
class tcp_listener {
 public:
  /// An empty listener (not listening).
  tcp_listener() noexcept;
  /// Takes over `other`'s socket and pending accepts; `other` becomes empty.
  tcp_listener(tcp_listener&&) noexcept;
  /// Closes this listener (as close()), then takes over `other`'s socket.
  tcp_listener& operator=(tcp_listener&&) noexcept;
  /// Stops listening, as close().
  ~tcp_listener();

  /// Binds and listens on host:port ("127.0.0.1", "::1", "0.0.0.0", "localhost"); port 0
  /// picks a free port (see port()). Throws corio::error with the OS error on failure (a
  /// resolver_category() code for a name that does not resolve). A name
  /// is resolved with getaddrinfo on the calling thread (a numeric address never is) and
  /// only its first address is bound: where "localhost" means ::1 and 127.0.0.1, name the
  /// one you want, or "::" for both families.
  static tcp_listener bind(std::string_view host, std::uint16_t port, listen_options options = {});

  /// Binds and listens on the unix domain stream socket `path`, for a server behind nginx or
  /// a supervisor (Tornado's bind_unix_socket; Asio's local::stream_protocol). accept()
  /// then yields tcp_streams that behave as TCP ones (no endpoints, no TCP_NODELAY).
  ///  - `path` is a file path (at most 107 bytes: sun_path holds 108 with the final NUL), or
  ///    a Linux abstract name, written with a leading `@` (`@myapp`, as ss(8) and systemd
  ///    show them) or a leading NUL byte: the name is the bytes after it (at most 107), and
  ///    no file is made. A file whose name starts with `@` is reached as `./@x`.
  ///  - An existing socket file that nobody listens on (a probe connect is refused) is a
  ///    crashed server's: it is removed first, as Tornado does. If a server still listens
  ///    on it (it sees the probe as a connection closed at once): corio::error with
  ///    EADDRINUSE, where Tornado would take the path from it; another probe error is
  ///    reported as is. Anything else at the path (a regular file, a directory) is never
  ///    removed: corio::error with EEXIST. The socket appears at the path only once it
  ///    listens: it is bound under a hidden name next to it (`.corio-new-<pid>-<n>`) and
  ///    hard-linked to the path, so of two servers starting at once exactly one gets it.
  ///  - options.mode is applied with chmod() before listen(); options.unlink_on_close
  ///    (default true) removes the file again in close() and the destructor.
  /// Throws std::invalid_argument for an empty or too long path (the message names the path
  /// and the limit), a NUL inside a file path, or a mode with an abstract name; corio::error
  /// naming the path with the OS error (EACCES, ENOENT for a missing directory,
  /// EADDRINUSE…) otherwise. port() is then 0 and local_endpoint() empty; see unix_path().
  static tcp_listener bind_unix(std::string_view path, unix_listen_options options = {});

  /// Accepts the next connection. Throws corio::error with the OS error (EMFILE, …), or
  /// stream_closed_error if the listener is closed while waiting. After EMFILE or ENFILE
  /// the connection stays queued, so an accept loop should pause (sleep_for) before it
  /// accepts again: retrying at once only spins. After an accept that found
  /// a connection, the next one takes a connection already queued at once, without waiting
  /// a loop turn, so that one accept loop drains a burst quickly (every 64th yields a turn).
  [[nodiscard]] task<tcp_stream> accept(stream_options options = {});

  /// The bound port; it stays readable after close() (for a log line), though the port may
  /// then be bound by others.
  std::uint16_t port() const noexcept;
  /// The bound address and port (empty for a unix socket); kept after close(), as port().
  endpoint local_endpoint() const;
  /// The unix socket path as given to bind_unix (`@name` for an abstract name, also one
  /// given with a leading NUL byte); empty for a TCP listener.
  std::string unix_path() const;
  /// Stops listening; a pending accept fails with stream_closed_error. A unix listener
  /// bound with unix_listen_options::unlink_on_close removes its socket file.
  void close() noexcept;
  /// The listening fd (-1 once closed).
  int native_handle() const noexcept;

  /// @cond INTERNAL
  struct state;
  /// @endcond
 private:
  std::shared_ptr<state> state_;  // shared with pending accepts, which may outlive us
};

/// The category of name-resolution failures (tcp_stream::connect, tcp_listener::bind):
/// getaddrinfo's EAI_* codes as glibc numbers them (EAI_NONAME is -2), with gai_strerror's
/// text ("Name or service not known"). EAI_SYSTEM is reported as its errno instead, in
/// std::generic_category. Tornado raises socket.gaierror; Asio uses its netdb category.
const std::error_category& resolver_category() noexcept;

/// Two connected unix stream sockets as streams (for tests and in-process pipelines).
/// Must be called on a thread running an event_loop.
std::pair<tcp_stream, tcp_stream> stream_pair(stream_options options = {});

}  // namespace corio
