#include "support/processes.hpp"

#include <dirent.h>
#include <errno.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace corio::testing {
namespace {

/// The fields of /proc/<pid>/stat after the command: state, ppid. The command is in
/// parentheses and may itself contain spaces and parentheses, so parse from the last ')'.
bool read_stat(pid_t pid, std::string& command, char& state, pid_t& ppid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  auto open = line.find('(');
  auto close = line.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return false;
  command = line.substr(open + 1, close - open - 1);
  std::istringstream rest(line.substr(close + 1));
  return static_cast<bool>(rest >> state >> ppid);
}

}  // namespace

std::vector<pid_t> child_processes() {
  std::vector<pid_t> children;
  const pid_t self = ::getpid();
  if (DIR* dir = ::opendir("/proc")) {
    while (dirent* entry = ::readdir(dir)) {
      char* end = nullptr;
      long pid = std::strtol(entry->d_name, &end, 10);
      if (end == entry->d_name || *end != '\0') continue;
      std::string command;
      char state = 0;
      pid_t ppid = 0;
      if (read_stat(static_cast<pid_t>(pid), command, state, ppid) && ppid == self) {
        children.push_back(static_cast<pid_t>(pid));
      }
    }
    ::closedir(dir);
  }
  return children;
}

bool no_children_left() {
  siginfo_t info{};
  return ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == -1 && errno == ECHILD;
}

std::string describe_processes(const std::vector<pid_t>& pids) {
  std::string text;
  for (pid_t pid : pids) {
    std::string command;
    char state = '?';
    pid_t ppid = 0;
    read_stat(pid, command, state, ppid);
    if (!text.empty()) text += ", ";
    text += "pid " + std::to_string(pid) + " (" + command + ") state " + state;
  }
  return text;
}

std::string describe_open_fds() {
  std::string text;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (dirent* entry = ::readdir(dir)) {
      if (entry->d_name[0] == '.') continue;
      char target[512];
      std::string link = std::string("/proc/self/fd/") + entry->d_name;
      ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
      target[n > 0 ? n : 0] = '\0';
      text += std::string(entry->d_name) + " -> " + target + "\n";
    }
    ::closedir(dir);
  }
  return text;
}

}  // namespace corio::testing
