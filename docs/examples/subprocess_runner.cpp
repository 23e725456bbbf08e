// The subprocess guide's example (docs/subprocess.md): four commands run at once, each under
// a time limit, and one line each saying what happened. Usage: subprocess_runner
#include <chrono>
#include <corio/corio.hpp>
#include <cstdio>
#include <string>
#include <vector>

using namespace std::chrono_literals;

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// Runs argv (no shell) with a time limit and describes the outcome in one line.
corio::task<std::string> describe(std::vector<std::string> argv, std::chrono::milliseconds limit) {
  std::string line;
  for (const std::string& word : argv) line += (line.empty() ? "" : " ") + word;
  line += ": ";
  try {
    corio::process_result r = co_await corio::run_process(std::move(argv), limit);
    if (r.timed_out) {
      line += "timed out after " + std::to_string(limit.count()) + " ms, killed (status " +
              std::to_string(r.status) + ")";
    } else if (r.status == 0) {
      line += "exited with status 0, stdout: " + first_line(r.out);
    } else {
      line += "exited with status " + std::to_string(r.status) + ", stderr: " + first_line(r.err);
    }
  } catch (const corio::error& e) {  // the command could not be started at all
    line += std::string("failed to start: ") + e.what();
  }
  co_return line;
}

corio::task<int> run_all() {
  auto started = std::chrono::steady_clock::now();
  // corio::start runs each one up to its first wait, so all four run at the same time.
  std::vector<corio::task<std::string>> running;
  running.push_back(corio::start(describe({"sleep", "5"}, 3s)));
  running.push_back(corio::start(describe({"corio-no-such-command", "--help"}, 3s)));
  running.push_back(corio::start(describe({"cat", "/nonexistent/file"}, 3s)));
  running.push_back(corio::start(describe({"echo", "hello"}, 3s)));
  for (corio::task<std::string>& outcome : running) {
    std::string line = co_await std::move(outcome);
    std::printf("%s\n", line.c_str());
  }
  auto took = std::chrono::steady_clock::now() - started;
  std::printf(
      "all four done in %lld ms\n",
      static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
  co_return 0;
}

int main() {
  corio::event_loop loop;
  return loop.run(run_all());
}
