// Helpers for tests that run our binaries as separate processes, as users do.
#ifndef NINO_TESTS_PROCESS_UTIL_H_
#define NINO_TESTS_PROCESS_UTIL_H_

#include <sys/types.h>
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace nino::testing {

// A binary of this workspace: $<override_env> (CMake builds), else the Bazel runfiles path.
std::string RunfilesPath(const std::string& rel, const char* override_env);
std::string TrainBinary();      // trainer/nino_train ($NINO_TRAIN_BIN)
std::string NowcasterBinary();  // nowcaster/nino_nowcaster ($NINO_NOWCASTER_BIN)

// $NINO_SHARED_DIR, else the compiled-in default.
std::string SharedDir();

// A loopback socket bound to a free port; listening (accepting nothing) when `listen_on`.
struct LoopbackSocket {
  explicit LoopbackSocket(bool listen_on);
  ~LoopbackSocket();
  void Close();
  int fd = -1;
  int port = 0;
};
int FreePort();

struct Proc {
  pid_t pid = -1;
  std::string log;  // stdout and stderr of the process
};

// Starts `binary args...` with `env` ("K=V") added; output to `log`.
Proc Start(const std::string& binary, const std::vector<std::string>& args,
           const std::vector<std::string>& env, const std::string& log);
// Waits up to `seconds`, killing the process on timeout. The exit code, -signal, or -1000.
int Wait(const Proc& p, int seconds = 240);

std::string Slurp(const std::string& path);

// The flat parameters of <run_dir>/checkpoint.pt (a nino_train checkpoint).
torch::Tensor FinalParams(const std::string& run_dir);

}  // namespace nino::testing

#endif  // NINO_TESTS_PROCESS_UTIL_H_
