// Part of the test library (tests/testing): running our binaries as separate processes, as users
// do (fork/exec with an environment, output to a log file, a deadline), and reading what a
// nino_train run left behind. The rest of the library (free ports, temp folders, the shared
// folder, runfiles) is in test_util.h, which this header includes.
#ifndef NINO_TESTS_TESTING_PROCESS_UTIL_H_
#define NINO_TESTS_TESTING_PROCESS_UTIL_H_

#include <sys/types.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "tests/testing/test_util.h"

namespace nino::testing {

struct Proc {
  pid_t pid = -1;
  std::string log;  // stdout and stderr of the process
};

// Starts `binary args...` with `env` ("K=V") added; output to `log`.
Proc Start(const std::string& binary, const std::vector<std::string>& args,
           const std::vector<std::string>& env, const std::string& log);
// Waits up to `seconds`, killing the process on timeout. The exit code, -signal, or -1000.
int Wait(const Proc& p, int seconds = 240);

// Starts nino_nowcaster on 127.0.0.1:0 (with --metrics_port=0 --threads=1 --lame_duck_ms=0, then
// `args`), output to `log`, and waits up to 60 s for its "listening on 127.0.0.1:PORT" line. The
// port, or 0 with a test failure showing the log if it exited or printed no address; *proc is
// the process either way (pid -1 once it has exited).
int StartNowcasterProcess(const std::vector<std::string>& args, const std::string& log, Proc* proc);

// The contents of `path` ("" if it cannot be read); ReadFile under its old name.
inline std::string Slurp(const std::string& path) { return ReadFile(path); }

// The flat parameters of <run_dir>/checkpoint.pt (a nino_train checkpoint).
torch::Tensor FinalParams(const std::string& run_dir);

}  // namespace nino::testing

#endif  // NINO_TESTS_TESTING_PROCESS_UTIL_H_
