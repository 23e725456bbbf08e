// Child processes: posix_spawn with close-from, pipes as pipe_streams, exit through a pidfd.
#include "corio/subprocess.hpp"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

#include "backend/backend.hpp"
#include "corio/io.hpp"
#include "corio/loop.hpp"
#include "corio/timeout.hpp"

extern char** environ;

namespace corio {

struct subprocess::state {
  pid_t pid = -1;
  int pidfd = -1;
  std::string command;
  std::optional<int> status;
  bool detached = false;
  pipe_stream in, out, err;

  /// Reaps the child if it has exited (never blocks).
  bool try_reap() {
    if (status) return true;
    siginfo_t info{};
    if (::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG) != 0) {
      if (errno == ECHILD) status = -1;  // reaped by someone else: unknown status
      return status.has_value();
    }
    if (info.si_pid == 0) return false;  // still running
    status = info.si_code == CLD_EXITED ? info.si_status : -info.si_status;
    return true;
  }

  void close_pidfd() noexcept {
    if (pidfd < 0) return;
    if (event_loop* loop = event_loop::current_or_null()) loop->backend_impl().forget_fd(pidfd);
    ::close(std::exchange(pidfd, -1));
  }

  ~state() {
    if (pid > 0 && !status && !detached) {
      // Policy: kill and reap, so that neither a process nor a zombie outlives us.
      ::kill(pid, SIGKILL);
      siginfo_t info{};
      ::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED);
    }
    close_pidfd();
  }
};

namespace {

std::error_code os_error(int err) { return {err, std::generic_category()}; }

/// "No such file or directory (ENOENT)": the text and the errno's name.
std::string describe_errno(int err) {
  std::string text = std::strerror(err);
  if (const char* name = ::strerrorname_np(err)) text += std::string(" (") + name + ")";
  return text;
}

struct pipe_pair {
  int parent = -1;
  int child = -1;
};

pipe_pair make_child_pipe(bool child_reads) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    int err = errno;
    throw error("subprocess: pipe2 failed: " + describe_errno(err), os_error(err));
  }
  pipe_pair pair = child_reads ? pipe_pair{fds[1], fds[0]} : pipe_pair{fds[0], fds[1]};
  // Why: with 0, 1 or 2 closed in the parent (a daemon), the child's end can get one of those
  // numbers, and an earlier file action (dup2 or /dev/null onto that number) would replace it
  // before it is duplicated into place. Above 2 no file action touches it.
  if (pair.child <= 2) {
    int moved = ::fcntl(pair.child, F_DUPFD_CLOEXEC, 3);
    int err = errno;
    ::close(pair.child);
    if (moved < 0) {
      ::close(pair.parent);
      throw error("subprocess: fcntl(F_DUPFD_CLOEXEC) failed: " + describe_errno(err),
                  os_error(err));
    }
    pair.child = moved;
  }
  return pair;
}

}  // namespace

subprocess::subprocess() noexcept = default;
subprocess::subprocess(subprocess&&) noexcept = default;
subprocess& subprocess::operator=(subprocess&&) noexcept = default;
subprocess::~subprocess() = default;

subprocess subprocess::spawn(std::vector<std::string> argv, subprocess_options options) {
  if (argv.empty() || argv[0].empty()) {
    throw std::invalid_argument("subprocess::spawn: argv must name a command");
  }
  if (options.in == stdio::to_stdout || options.out == stdio::to_stdout) {
    throw std::invalid_argument("subprocess::spawn: only stderr can be merged into stdout");
  }
  event_loop::current();  // the pipe streams need a loop: fail before forking otherwise

  std::vector<int> parent_ends;  // closed on failure
  std::vector<int> child_ends;   // always closed in the parent after spawning
  auto cleanup = [&] {
    for (int fd : child_ends) ::close(fd);
    child_ends.clear();
  };
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  pipe_pair in{}, out{}, err{};
  try {
    auto connect = [&](stdio how, int target, bool child_reads, pipe_pair& pair) {
      if (how == stdio::pipe) {
        pair = make_child_pipe(child_reads);
        parent_ends.push_back(pair.parent);
        child_ends.push_back(pair.child);
        posix_spawn_file_actions_adddup2(&actions, pair.child, target);
      } else if (how == stdio::null) {
        posix_spawn_file_actions_addopen(&actions, target, "/dev/null",
                                         child_reads ? O_RDONLY : O_WRONLY, 0);
      } else if (how == stdio::to_stdout) {
        posix_spawn_file_actions_adddup2(&actions, 1, 2);
      }
    };
    connect(options.in, 0, true, in);
    connect(options.out, 1, false, out);
    connect(options.err, 2, false, err);
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    if (!options.working_directory.empty()) {
      posix_spawn_file_actions_addchdir_np(&actions, options.working_directory.c_str());
    }
  } catch (...) {
    posix_spawn_file_actions_destroy(&actions);
    cleanup();
    for (int fd : parent_ends) ::close(fd);
    throw;
  }

  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  std::vector<char*> env;
  if (options.environment) {
    for (std::string& e : *options.environment) env.push_back(e.data());
    env.push_back(nullptr);
  }
  // Why: the loop blocks SIGPIPE in its thread (so that pipe writes report EPIPE), and a
  // child inherits the mask; it would then get EPIPE instead of dying like a shell's child
  // (`yes | head` would print "Broken pipe"). The child gets this thread's mask without
  // SIGPIPE, and SIGPIPE's default action even if the application ignores it (as Python's
  // subprocess does with restore_signals, which Tornado relies on).
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t child_mask;
  pthread_sigmask(SIG_BLOCK, nullptr, &child_mask);
  sigdelset(&child_mask, SIGPIPE);
  sigset_t default_action;
  sigemptyset(&default_action);
  sigaddset(&default_action, SIGPIPE);
  posix_spawnattr_setsigmask(&attributes, &child_mask);
  posix_spawnattr_setsigdefault(&attributes, &default_action);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  // Why the child's fd 1 first: dup2(1, 2) for merged stderr must run after stdout is set,
  // which posix_spawn guarantees by applying file actions in order.
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, args[0], &actions, &attributes, args.data(),
                          options.environment ? env.data() : environ);
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  cleanup();
  if (rc != 0) {
    // glibc reports exec failures here and has already reaped the child (no zombie).
    for (int fd : parent_ends) ::close(fd);
    // posix_spawn reports a failed chdir with the same errno as a failed exec; say which.
    if (!options.working_directory.empty()) {
      const char* dir = options.working_directory.c_str();
      struct stat info {};
      int dir_error = ::stat(dir, &info) != 0    ? errno
                      : !S_ISDIR(info.st_mode)   ? ENOTDIR
                      : ::access(dir, X_OK) != 0 ? errno
                                                 : 0;
      if (dir_error != 0) {
        throw error("subprocess::spawn: cannot run \"" + argv[0] + "\" in working directory \"" +
                        options.working_directory + "\": " + describe_errno(dir_error),
                    os_error(dir_error));
      }
    }
    throw error("subprocess::spawn: cannot execute \"" + argv[0] + "\": " + describe_errno(rc),
                os_error(rc));
  }
  subprocess p;
  p.state_ = std::make_unique<state>();
  p.state_->pid = pid;
  p.state_->command = argv[0];
  // Why the raw syscall: glibc 2.36's <sys/pidfd.h> lacks C linkage for C++ callers.
  p.state_->pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (p.state_->pidfd < 0) {
    int e = errno;
    for (int fd : parent_ends) ::close(fd);
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    p.state_->pid = -1;
    throw error("subprocess::spawn: pidfd_open failed (Linux 5.3+ needed): " + describe_errno(e),
                os_error(e));
  }
  ::fcntl(p.state_->pidfd, F_SETFD, FD_CLOEXEC);
  if (in.parent >= 0) p.state_->in = pipe_stream(in.parent, options.streams);
  if (out.parent >= 0) p.state_->out = pipe_stream(out.parent, options.streams);
  if (err.parent >= 0) p.state_->err = pipe_stream(err.parent, options.streams);
  return p;
}

pid_t subprocess::pid() const noexcept { return state_ ? state_->pid : -1; }

namespace {
pipe_stream& require_pipe(subprocess::state* s, pipe_stream subprocess::state::*member,
                          const char* name) {
  if (s == nullptr || !(s->*member)) {
    throw std::logic_error(std::string("subprocess::") + name +
                           ": that stream was not set to stdio::pipe");
  }
  return s->*member;
}
}  // namespace

pipe_stream& subprocess::stdin_stream() {
  return require_pipe(state_.get(), &state::in, "stdin_stream");
}
pipe_stream& subprocess::stdout_stream() {
  return require_pipe(state_.get(), &state::out, "stdout_stream");
}
pipe_stream& subprocess::stderr_stream() {
  return require_pipe(state_.get(), &state::err, "stderr_stream");
}

task<int> subprocess::wait() {
  if (!state_) throw std::logic_error("subprocess::wait: no process");
  state* s = state_.get();
  while (!s->try_reap()) {
    // The pidfd becomes readable when the child exits (Linux 5.3+), on either backend.
    int rc = co_await io::poll(s->pidfd, POLLIN);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN) {
      throw error(std::string("subprocess::wait: poll on pidfd failed: ") + std::strerror(-rc),
                  os_error(-rc));
    }
  }
  co_return *s->status;
}

task<int> subprocess::wait_for(std::chrono::nanoseconds limit) {
  try {
    co_return co_await with_timeout(limit, wait());
  } catch (const timeout_error&) {
  }
  kill();
  co_await wait();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(limit).count();
  throw timeout_error("subprocess \"" + state_->command + "\" (pid " + std::to_string(state_->pid) +
                      ") did not exit within " + std::to_string(ms) + " ms and was killed");
}

task<void> subprocess::wait_checked() {
  int status = co_await wait();
  if (status != 0) {
    throw called_process_error(
        "subprocess \"" + state_->command + "\" exited with status " + std::to_string(status),
        status);
  }
}

std::optional<int> subprocess::exit_status() const noexcept {
  return state_ ? state_->status : std::nullopt;
}

void subprocess::send_signal(int signal) noexcept {
  if (state_ && !state_->status && state_->pidfd >= 0) {
    // Why a pidfd: a pid could be reused by another process once reaped; a pidfd cannot.
    ::syscall(SYS_pidfd_send_signal, state_->pidfd, signal, nullptr, 0);
  }
}
void subprocess::terminate() noexcept { send_signal(SIGTERM); }
void subprocess::kill() noexcept { send_signal(SIGKILL); }
void subprocess::detach() noexcept {
  if (state_) state_->detached = true;
}

namespace {

task<process_result> run_process_impl(std::vector<std::string> argv, std::chrono::nanoseconds limit,
                                      subprocess_options options) {
  options.out = stdio::pipe;
  if (options.err != stdio::to_stdout) options.err = stdio::pipe;
  if (options.in == stdio::inherit) options.in = stdio::null;
  subprocess child = subprocess::spawn(std::move(argv), options);
  // Nobody can write to a stdin pipe of ours: close it, so that a reader sees EOF at once.
  if (options.in == stdio::pipe) child.stdin_stream().close();
  // Both reads start now (S4), so neither pipe can fill up and block the child.
  task<std::string> out = child.stdout_stream().read_until_close();
  task<std::string> err =
      options.err == stdio::pipe ? child.stderr_stream().read_until_close() : task<std::string>();
  process_result result;
  if (limit.count() > 0) {
    try {
      result.status = co_await child.wait_for(limit);
    } catch (const timeout_error&) {
      result.timed_out = true;
      result.status = *child.exit_status();
    }
  } else {
    result.status = co_await child.wait();
  }
  // Exit and pipe EOF are independent (S57): a grandchild may hold the pipes open.
  if (result.timed_out) {
    child.stdout_stream().close();
    if (err) child.stderr_stream().close();
  }
  result.out = co_await std::move(out);
  if (err) result.err = co_await std::move(err);
  co_return result;
}

}  // namespace

task<process_result> run_process(std::vector<std::string> argv, std::chrono::nanoseconds limit,
                                 subprocess_options options) {
  return run_process_impl(std::move(argv), limit, std::move(options));
}

// Why overloads instead of a default argument: g++ 12 miscompiles an aggregate temporary
// holding a std::string (the default `= {}`) that is created inside a co_await expression.
task<process_result> run_process(std::vector<std::string> argv, std::chrono::nanoseconds limit) {
  return run_process_impl(std::move(argv), limit, subprocess_options());
}

task<process_result> run_process(std::vector<std::string> argv) {
  return run_process_impl(std::move(argv), std::chrono::nanoseconds(0), subprocess_options());
}

}  // namespace corio
