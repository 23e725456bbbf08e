// corio/subprocess.hpp - child processes with pipe streams, waited for without blocking.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "corio/pipe.hpp"
#include "corio/task.hpp"

namespace corio {

/// What a child's stdin, stdout or stderr is connected to.
enum class stdio {
  inherit,    ///< the parent's fd
  pipe,       ///< a pipe; the parent's end is a pipe_stream
  null,       ///< /dev/null
  to_stdout,  ///< stderr only: the same as stdout (merged)
};

/// How to start a child.
struct subprocess_options {
  stdio in = stdio::inherit;   ///< stdin
  stdio out = stdio::inherit;  ///< stdout
  stdio err = stdio::inherit;  ///< stderr (or stdio::to_stdout)
  /// The environment ("NAME=value"); nullopt inherits the parent's.
  std::optional<std::vector<std::string>> environment;
  std::string working_directory;  ///< empty: the parent's
  stream_options streams{};       ///< options of the pipe streams
  /// Starts the child in a new process group of its own (its id is the child's pid), so that
  /// what it starts in turn can be stopped with it: terminate(), kill(), send_signal(), the
  /// destructor, wait_for()'s and run_process()'s time limits then signal the whole group,
  /// even after the child itself exited. The child is then reaped only when the object goes
  /// (until then it is a zombie that keeps the group id from being reused), and wait()
  /// reports its status without reaping it. Processes that leave the group (setsid, a
  /// daemon) are not reached. A group other than the terminal's foreground group that
  /// reads the terminal is stopped (SIGTTIN): use it with stdin not inherited from a tty.
  bool new_process_group = false;
};

/// A running (or finished) child process. Spawning is immediate; waiting is a coroutine
/// that watches a pidfd through the loop (no SIGCHLD handler that other code could race).
///
/// Destruction policy: a subprocess destroyed while its child still runs kills the child
/// (SIGKILL) and reaps it, so no process and no zombie outlives the object. Call detach()
/// to let a child run on instead (it is then reaped by nobody but init after we exit).
/// Waits in progress keep what they need: a subprocess may be moved or destroyed while a
/// wait(), wait_for() or wait_checked() is pending (destroying it kills the child, and the
/// wait completes with -SIGKILL).
class subprocess {
 public:
  /// An empty object that refers to no process.
  subprocess() noexcept;
  /// Takes over `other`'s child and pipes; `other` becomes empty.
  subprocess(subprocess&&) noexcept;
  /// Kills and reaps this object's running child (as the destructor), then takes over `other`'s.
  subprocess& operator=(subprocess&&) noexcept;
  subprocess(const subprocess&) = delete;
  subprocess& operator=(const subprocess&) = delete;
  /// Kills (SIGKILL) and reaps a child that still runs, unless detach() was called.
  ~subprocess();

  /// Starts argv[0] (searched in the parent's PATH) with arguments argv[1..]; no shell is
  /// involved. Every fd other than 0, 1 and 2 is closed in the child. Needs Linux 5.4+
  /// (pidfd_open and waitid(P_PIDFD)). The child starts with
  /// no signal blocked, whatever the calling thread blocks (the loop blocks SIGPIPE in its
  /// thread), and with SIGPIPE's default action even if it is ignored here, so it dies of
  /// SIGPIPE like a shell's child and terminate() reaches it. Throws corio::error
  /// naming the command (or the working directory) and the errno, e.g. "No such file or
  /// directory (ENOENT)", with code() set, if it cannot be executed; no zombie is left.
  /// Must be called on a thread running an event_loop.
  static subprocess spawn(std::vector<std::string> argv, subprocess_options options = {});

  /// The child's process id.
  pid_t pid() const noexcept;
  /// The parent's end of the child's stdin (options.in == stdio::pipe), else std::logic_error.
  /// Closing it delivers EOF to the child.
  pipe_stream& stdin_stream();
  /// The parent's end of the child's stdout (options.out == stdio::pipe), else
  /// std::logic_error.
  pipe_stream& stdout_stream();
  /// The parent's end of the child's stderr (options.err == stdio::pipe), else
  /// std::logic_error.
  pipe_stream& stderr_stream();

  /// Completes with the exit status once the child has exited: its exit code, or -N if a
  /// signal N killed it (S58). Any number of waiters; later calls complete at once (D6).
  /// Cancelling the wait (with_timeout, dropping the task) does not kill the child.
  [[nodiscard]] task<int> wait();
  /// As wait(), but if the child has not exited within `limit` it is killed (SIGKILL),
  /// reaped, and timeout_error is thrown naming the command. (Unlike a with_timeout around
  /// wait(), which never kills: this is the explicit form, issue 5.)
  [[nodiscard]] task<int> wait_for(std::chrono::nanoseconds limit);
  /// As wait(), but throws called_process_error if the status is not 0.
  [[nodiscard]] task<void> wait_checked();

  /// The exit status once a wait has seen the child exit (with options.new_process_group,
  /// before it is reaped); std::nullopt before. Only a wait updates it (Tornado's returncode
  /// is set by a SIGCHLD handler): a child that exited unawaited still reads std::nullopt.
  std::optional<int> exit_status() const noexcept;
  /// Sends SIGTERM (to the group with options.new_process_group). Does nothing once the
  /// child has been reaped.
  void terminate() noexcept;
  /// Sends SIGKILL (to the group with options.new_process_group). Does nothing once the
  /// child has been reaped.
  void kill() noexcept;
  /// Sends `signal` (to the group with options.new_process_group). Does nothing once the
  /// child has been reaped.
  void send_signal(int signal) noexcept;
  /// Gives up ownership: the child keeps running and is not killed on destruction.
  void detach() noexcept;

  /// @cond INTERNAL
  struct state;
  /// @endcond
 private:
  // Shared with the waits in progress, so that moving or destroying the object while one
  // is pending leaves it nothing dangling.
  std::shared_ptr<state> state_;
};

/// What run_process collected.
struct process_result {
  int status = 0;          ///< exit code, or -N for signal N
  std::string out;         ///< everything the child wrote to stdout
  std::string err;         ///< everything the child wrote to stderr
  bool timed_out = false;  ///< the limit expired before the child exited and its output ended
};

/// Runs a command to completion, capturing stdout and stderr fully (read concurrently, so a
/// child that fills both pipes never deadlocks). A limit > 0 bounds the whole call: the
/// child's exit and the end of its output (a process it started in the background may hold
/// the pipes open after it exits). When it expires, a child still running is killed, the
/// pipes are closed, and the result says timed_out, with the status (-SIGKILL if it was
/// killed) and whatever output had arrived; with options.new_process_group the whole group is
/// killed, so what the command left running in the background goes too. Throws corio::error
/// if the command cannot be
/// executed, and stream_closed_error (code errc::buffer_full) if stdout or stderr carries
/// more than options.streams.max_buffer_size (100 MiB by default; the child, its pipe
/// closed, then dies of SIGPIPE: raise the limit for bigger outputs). options.out and options.err
/// are replaced by pipes (err stays merged if it is stdio::to_stdout); stdin inherit becomes
/// /dev/null, and a stdin pipe is closed at once (nobody could write to it), so a child reading
/// stdin sees EOF.
///
/// g++ 12 note: an aggregate temporary such as `{.working_directory = "/tmp"}` written inside
/// a co_await expression is miscompiled by g++ 12 (its std::string members are copied
/// bitwise); name the options in a variable first. The overloads without options avoid the
/// default-argument form of that bug.
[[nodiscard]] task<process_result> run_process(std::vector<std::string> argv,
                                               std::chrono::nanoseconds limit,
                                               subprocess_options options);
/// run_process with default options.
[[nodiscard]] task<process_result> run_process(std::vector<std::string> argv,
                                               std::chrono::nanoseconds limit);
/// run_process with default options and no time limit.
[[nodiscard]] task<process_result> run_process(std::vector<std::string> argv);

}  // namespace corio
