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
  bool reaped = false;  // a group leader's status is known before it is reaped
  bool group = false;   // subprocess_options::new_process_group
  bool detached = false;
  pipe_stream in, out, err;

  state() = default;
  state(const state&) = delete;
  state& operator=(const state&) = delete;

  static int decode(const siginfo_t& info) {
    return info.si_code == CLD_EXITED ? info.si_status : -info.si_status;
  }

  /// Reaps the child if it has exited (never blocks); a group leader's status is only read,
  /// and the leader stays a zombie until the object goes (see send()). Throws if waitid
  /// fails for a reason other than a signal or someone else having reaped the child:
  /// waiting would spin.
  bool try_reap() {
    if (status) return true;
    siginfo_t info{};
    int flags = WEXITED | WNOHANG | (group ? WNOWAIT : 0);
    if (::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, flags) != 0) {
      int e = errno;
      if (e == EINTR) return false;
      if (e == ECHILD) {  // reaped by someone else (SIGCHLD ignored, waitpid(-1)): unknown
        status = -1;
        reaped = true;
        return true;
      }
      throw error("subprocess \"" + command +
                      "\": waitid on its pidfd failed (Linux 5.4+ needed): " + std::strerror(e),
                  std::error_code(e, std::generic_category()));
    }
    if (info.si_pid == 0) return false;  // still running
    status = decode(info);
    reaped = !group;
    return true;
  }

  void send(int signal) const noexcept {
    if (pid <= 0 || reaped) return;
    if (group) {
      // Why a group leader is reaped only at the end: while it is an unreaped zombie, Linux
      // cannot give its pid to another process, so the group id still names our group even
      // after the leader exited (run_process's limit must reach what it left running).
      ::kill(-pid, signal);
    } else if (pidfd >= 0) {
      // Why a pidfd: a pid could be reused by another process once reaped; a pidfd cannot.
      ::syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0);
    }
  }

  /// Waits for the child to exit and reaps it.
  void reap_blocking() noexcept {
    siginfo_t info{};
    int rc;
    do {
      rc = ::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED);
    } while (rc != 0 && errno == EINTR);
    if (!status) status = rc == 0 ? decode(info) : -1;
    reaped = true;
  }

  /// The destruction policy: kill and reap a child that still runs (with its whole process
  /// group, if it leads one), so that neither a process nor a zombie outlives the subprocess
  /// object (unless it was detached).
  void kill_and_reap() noexcept {
    if (pid <= 0 || reaped || pidfd < 0) return;
    if (detached) {
      // A group leader kept as a zombie only to pin the group id: nobody will signal it now.
      if (group && status) reap_blocking();
      return;
    }
    if (!group && status) return;
    send(SIGKILL);
    reap_blocking();
  }

  void close_pidfd() noexcept {
    if (pidfd < 0) return;
    if (event_loop* loop = event_loop::current_or_null()) loop->backend_impl().forget_fd(pidfd);
    ::close(std::exchange(pidfd, -1));
  }

  ~state() {
    kill_and_reap();
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

/// Closes an fd it holds when it goes out of scope.
class fd_holder {
 public:
  fd_holder() = default;
  fd_holder(const fd_holder&) = delete;
  fd_holder& operator=(const fd_holder&) = delete;
  ~fd_holder() { reset(); }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

/// posix_spawn's file actions and attributes, destroyed on every path.
struct spawn_setup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
  spawn_setup() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attributes);
  }
  spawn_setup(const spawn_setup&) = delete;
  spawn_setup& operator=(const spawn_setup&) = delete;
  ~spawn_setup() {
    posix_spawnattr_destroy(&attributes);
    posix_spawn_file_actions_destroy(&actions);
  }
};

void check_spawn_call(int rc, const char* what) {
  if (rc != 0) {
    throw error(std::string("subprocess::spawn: ") + what + " failed: " + describe_errno(rc),
                os_error(rc));
  }
}

}  // namespace

subprocess::subprocess() noexcept = default;
subprocess::subprocess(subprocess&&) noexcept = default;
subprocess& subprocess::operator=(subprocess&& other) noexcept {
  if (this != &other) {
    if (state_) state_->kill_and_reap();
    state_ = std::move(other.state_);
  }
  return *this;
}
subprocess::~subprocess() {
  if (state_) state_->kill_and_reap();
}

subprocess subprocess::spawn(std::vector<std::string> argv, subprocess_options options) {
  if (argv.empty() || argv[0].empty()) {
    throw std::invalid_argument("subprocess::spawn: argv must name a command");
  }
  if (options.in == stdio::to_stdout || options.out == stdio::to_stdout) {
    throw std::invalid_argument("subprocess::spawn: only stderr can be merged into stdout");
  }
  event_loop::current();  // the pipe streams need a loop: fail before forking otherwise

  // Everything that can fail for want of memory or fds is made before the child starts,
  // and owned: a failure then leaks no fd and leaves no child behind.
  auto child = std::make_shared<state>();
  child->command = argv[0];
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  std::vector<char*> env;
  if (options.environment) {
    env.reserve(options.environment->size() + 1);
    for (std::string& e : *options.environment) env.push_back(e.data());
    env.push_back(nullptr);
  }
  spawn_setup setup;
  fd_holder child_ends[3];  // closed in the parent once the child has its copies
  auto connect = [&](stdio how, int target, bool child_reads, pipe_stream& parent_end) {
    if (how == stdio::pipe) {
      pipe_pair pair = make_child_pipe(child_reads);
      child_ends[target].reset(pair.child);
      parent_end = pipe_stream(pair.parent, options.streams);  // owns pair.parent, even on throw
      check_spawn_call(posix_spawn_file_actions_adddup2(&setup.actions, pair.child, target),
                       "posix_spawn_file_actions_adddup2");
    } else if (how == stdio::null) {
      check_spawn_call(posix_spawn_file_actions_addopen(&setup.actions, target, "/dev/null",
                                                        child_reads ? O_RDONLY : O_WRONLY, 0),
                       "posix_spawn_file_actions_addopen");
    } else if (how == stdio::to_stdout) {
      check_spawn_call(posix_spawn_file_actions_adddup2(&setup.actions, 1, 2),
                       "posix_spawn_file_actions_adddup2");
    }
  };
  // Why the child's fd 1 before fd 2: dup2(1, 2) for merged stderr must run after stdout is
  // set, which posix_spawn guarantees by applying file actions in order.
  connect(options.in, 0, true, child->in);
  connect(options.out, 1, false, child->out);
  connect(options.err, 2, false, child->err);
  check_spawn_call(posix_spawn_file_actions_addclosefrom_np(&setup.actions, 3),
                   "posix_spawn_file_actions_addclosefrom_np");
  if (!options.working_directory.empty()) {
    check_spawn_call(
        posix_spawn_file_actions_addchdir_np(&setup.actions, options.working_directory.c_str()),
        "posix_spawn_file_actions_addchdir_np");
  }
  // Why an empty signal mask: a child inherits the calling thread's mask, and the loop blocks
  // SIGPIPE in its thread (so that pipe writes report EPIPE); with it blocked the child would
  // get EPIPE instead of dying like a shell's child (`yes | head` would print "Broken pipe").
  // Any other signal the thread blocks (a signalfd or sigwait program blocks SIGTERM) would
  // make the child ignore terminate(). Rust's std::process and libuv start children with an
  // empty mask too. SIGPIPE also gets its default action even if the application ignores it
  // (as Python's subprocess does with restore_signals, which Tornado relies on); other ignored
  // signals stay ignored (nohup relies on that). Caught signals are reset by exec anyway.
  sigset_t child_mask;
  sigemptyset(&child_mask);
  sigset_t default_action;
  sigemptyset(&default_action);
  sigaddset(&default_action, SIGPIPE);
  posix_spawnattr_setsigmask(&setup.attributes, &child_mask);
  posix_spawnattr_setsigdefault(&setup.attributes, &default_action);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (options.new_process_group) {
    posix_spawnattr_setpgroup(&setup.attributes, 0);  // a group of its own, id = its pid
    flags |= POSIX_SPAWN_SETPGROUP;
    child->group = true;
  }
  posix_spawnattr_setflags(&setup.attributes, flags);

  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, args[0], &setup.actions, &setup.attributes, args.data(),
                          options.environment ? env.data() : environ);
  for (fd_holder& end : child_ends) end.reset();
  if (rc != 0) {
    // glibc reports exec failures here and has already reaped the child (no zombie).
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
  child->pid = pid;
  // Why the raw syscall: glibc 2.36's <sys/pidfd.h> lacks C linkage for C++ callers. (glibc
  // 2.39's pidfd_spawnp would close the window between spawning and opening the pidfd.)
  child->pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (child->pidfd < 0) {
    int e = errno;
    if (e == ESRCH) {
      // The child already exited and was reaped by someone else (SIGCHLD ignored, or a
      // handler calling waitpid(-1)) before its pidfd could be opened: it ran, its status
      // is unknown, as when the same happens later (try_reap's ECHILD).
      child->status = -1;
      child->reaped = true;
    } else {
      // Still our unreaped child (nobody else reaps while SIGCHLD is not ignored), so its
      // pid cannot have been reused yet.
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
      child->pid = -1;
      throw error("subprocess::spawn: pidfd_open failed (Linux 5.4+ needed): " + describe_errno(e),
                  os_error(e));
    }
  } else {
    ::fcntl(child->pidfd, F_SETFD, FD_CLOEXEC);
  }
  subprocess p;
  p.state_ = std::move(child);
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

namespace {

// The waits hold the state, not the subprocess object: it may be moved or destroyed while
// they are pending.
task<int> wait_on(std::shared_ptr<subprocess::state> s) {
  while (!s->try_reap()) {
    // The pidfd becomes readable when the child exits, on either backend.
    int rc = co_await io::poll(s->pidfd, POLLIN);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN) {
      throw error(
          "subprocess \"" + s->command + "\": poll on its pidfd failed: " + describe_errno(-rc),
          os_error(-rc));
    }
  }
  co_return *s->status;
}

task<int> wait_for_on(std::shared_ptr<subprocess::state> s, std::chrono::nanoseconds limit) {
  try {
    co_return co_await with_timeout(limit, wait_on(s));
  } catch (const timeout_error&) {
  }
  // It may have exited just after the limit: then it was not killed, and says so.
  if (s->try_reap()) co_return *s->status;
  s->send(SIGKILL);
  co_await wait_on(s);
  throw timeout_error("subprocess \"" + s->command + "\" (pid " + std::to_string(s->pid) +
                      ") did not exit within " + detail::limit_text(limit) + " and was killed");
}

task<void> wait_checked_on(std::shared_ptr<subprocess::state> s) {
  int status = co_await wait_on(s);
  if (status != 0) {
    throw called_process_error(
        "subprocess \"" + s->command + "\" exited with status " + std::to_string(status), status);
  }
}

std::shared_ptr<subprocess::state> require_process(const std::shared_ptr<subprocess::state>& s,
                                                   const char* name) {
  if (!s) throw std::logic_error(std::string("subprocess::") + name + ": no process");
  return s;
}

}  // namespace

task<int> subprocess::wait() { return wait_on(require_process(state_, "wait")); }

task<int> subprocess::wait_for(std::chrono::nanoseconds limit) {
  return wait_for_on(require_process(state_, "wait_for"), limit);
}

task<void> subprocess::wait_checked() {
  return wait_checked_on(require_process(state_, "wait_checked"));
}

std::optional<int> subprocess::exit_status() const noexcept {
  return state_ ? state_->status : std::nullopt;
}

void subprocess::send_signal(int signal) noexcept {
  if (state_) state_->send(signal);
}
void subprocess::terminate() noexcept { send_signal(SIGTERM); }
void subprocess::kill() noexcept { send_signal(SIGKILL); }
void subprocess::detach() noexcept {
  if (state_) state_->detached = true;
}

namespace {

/// Cancels a call_later timer when the coroutine frame holding it goes away.
struct timer_guard {
  timer_handle timer;
  timer_guard() = default;
  timer_guard(const timer_guard&) = delete;
  timer_guard& operator=(const timer_guard&) = delete;
  ~timer_guard() { timer.cancel(); }
};

task<process_result> run_process_impl(std::vector<std::string> argv, std::chrono::nanoseconds limit,
                                      subprocess_options options) {
  options.out = stdio::pipe;
  if (options.err != stdio::to_stdout) options.err = stdio::pipe;
  if (options.in == stdio::inherit) options.in = stdio::null;
  subprocess child = subprocess::spawn(std::move(argv), options);
  const bool separate_err = options.err == stdio::pipe;
  // Nobody can write to a stdin pipe of ours: close it, so that a reader sees EOF at once.
  if (options.in == stdio::pipe) child.stdin_stream().close();
  // Both reads start now (S4), so neither pipe can fill up and block the child.
  task<std::string> out = child.stdout_stream().read_until_close();
  task<std::string> err =
      separate_err ? child.stderr_stream().read_until_close() : task<std::string>();
  // One deadline for exit and output alike: exit and pipe EOF are independent (S57), and a
  // process the child started in the background may hold the pipes open long after it exits.
  bool expired = false;
  timer_guard deadline;
  if (limit.count() > 0) {
    deadline.timer = event_loop::current().call_later(limit, [&child, &expired, separate_err] {
      expired = true;
      child.kill();
      // Closing completes the reads with what arrived so far.
      child.stdout_stream().close();
      if (separate_err) child.stderr_stream().close();
    });
  }
  process_result result;
  result.status = co_await child.wait();
  result.out = co_await std::move(out);
  if (err) result.err = co_await std::move(err);
  result.timed_out = expired;
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
