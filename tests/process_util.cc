#include "tests/process_util.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/io/torch_file.h"

namespace nino::testing {

std::string RunfilesPath(const std::string& rel, const char* override_env) {
  if (const char* bin = std::getenv(override_env)) return bin;
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* ws = std::getenv("TEST_WORKSPACE");
  if (srcdir && ws) return std::string(srcdir) + "/" + ws + "/" + rel;
  return rel;
}
std::string TrainBinary() { return RunfilesPath("trainer/nino_train", "NINO_TRAIN_BIN"); }
std::string NowcasterBinary() {
  return RunfilesPath("nowcaster/nino_nowcaster", "NINO_NOWCASTER_BIN");
}

std::string SharedDir() {
  const char* env = std::getenv("NINO_SHARED_DIR");
  return env && *env ? env : NINO_SHARED_DIR_DEFAULT;
}

LoopbackSocket::LoopbackSocket(bool listen_on) {
  fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  if (listen_on) listen(fd, 16);
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
}
LoopbackSocket::~LoopbackSocket() { Close(); }
void LoopbackSocket::Close() {
  if (fd >= 0) close(fd);
  fd = -1;
}

int FreePort() { return LoopbackSocket(false).port; }

Proc Start(const std::string& binary, const std::vector<std::string>& args,
           const std::vector<std::string>& env, const std::string& log) {
  pid_t pid = fork();
  if (pid == 0) {
    for (const auto& e : env) putenv(strdup(e.c_str()));
    FILE* f = freopen(log.c_str(), "w", stdout);
    (void)f;
    dup2(fileno(stdout), 2);
    std::vector<char*> argv{strdup(binary.c_str())};
    for (const auto& a : args) argv.push_back(strdup(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return {pid, log};
}

int Wait(const Proc& p, int seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  int status = 0;
  while (waitpid(p.pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(p.pid, SIGKILL);
      waitpid(p.pid, &status, 0);
      return -1000;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

std::string Slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

torch::Tensor FinalParams(const std::string& run_dir) {
  auto file = io::LoadTorchFile(run_dir + "/checkpoint.pt");
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return torch::zeros({1});
  auto sd = io::ToNamedTensors(*file->Find("model"));
  EXPECT_TRUE(sd.ok()) << sd.status();
  if (!sd.ok()) return torch::zeros({1});
  std::vector<torch::Tensor> flat;
  for (const auto& [k, t] : *sd) flat.push_back(t.reshape({-1}));
  return torch::cat(flat);
}

}  // namespace nino::testing
