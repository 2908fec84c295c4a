#include "tests/testing/process_util.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "common/io/torch_file.h"

namespace nino::testing {

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

int StartNowcasterProcess(const std::vector<std::string>& args, const std::string& log,
                          Proc* proc) {
  std::vector<std::string> all = {"--address=127.0.0.1:0", "--metrics_port=0", "--threads=1",
                                  "--lame_duck_ms=0"};
  all.insert(all.end(), args.begin(), args.end());
  *proc = Start(NowcasterBinary(), all, {}, log);
  const std::string marker = "listening on 127.0.0.1:";
  for (int i = 0; i < 600; ++i) {  // 60 s
    const std::string text = ReadFile(log);
    const size_t at = text.find(marker);
    if (at != std::string::npos && text.find('\n', at) != std::string::npos) {
      return std::atoi(text.c_str() + at + marker.size());
    }
    int status = 0;
    if (waitpid(proc->pid, &status, WNOHANG) == proc->pid) {
      proc->pid = -1;
      ADD_FAILURE() << "nino_nowcaster exited at start:\n" << text;
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "nino_nowcaster printed no address in 60 s:\n" << ReadFile(log);
  return 0;
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
