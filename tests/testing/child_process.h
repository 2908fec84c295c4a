// Part of the test library (tests/testing): a child process (e.g. the nino_nowcaster binary)
// with its stderr on a pipe, read until a marker within a deadline; killed (SIGKILL) on
// destruction if it is still running. (process_util.h runs processes with their output in a
// log file instead.)
#ifndef NINO_TESTS_TESTING_CHILD_PROCESS_H_
#define NINO_TESTS_TESTING_CHILD_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace nino::testing {

class ChildProcess {
 public:
  // Forks and execs argv[0] with `argv`; pid() <= 0 if that failed.
  explicit ChildProcess(const std::vector<std::string>& argv);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }

  // Reads stderr until it contains `needle`, the child closes it, or `timeout` passes; returns
  // all read so far (the caller checks for the needle).
  std::string ReadUntil(const std::string& needle,
                        std::chrono::seconds timeout = std::chrono::seconds(60));

  // Waits up to `timeout` for the exit; the wait status, or -1 on timeout.
  int WaitExit(std::chrono::seconds timeout);

 private:
  pid_t pid_ = -1;
  int err_fd_ = -1;
  bool exited_ = false;
  std::string log_;
};

// The number after `marker` in `text` (e.g. the port after "listening on 127.0.0.1:"), or 0.
int NumberAfter(const std::string& text, const std::string& marker);

}  // namespace nino::testing

#endif  // NINO_TESTS_TESTING_CHILD_PROCESS_H_
