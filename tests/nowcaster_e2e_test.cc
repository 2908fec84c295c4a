// nino_train workers with NiNo steps on a nino_nowcaster daemon (--nowcaster), all as separate
// processes like users run them: the remote run matches the in-process run, and a missing or
// unresponsive nowcaster never stops nor hangs training (NiNo steps fail over to SGD/Adam steps
// and are counted).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/io/torch_file.h"

namespace {
namespace fs = std::filesystem;

std::string RunfilesPath(const std::string& rel, const char* override_env) {
  if (const char* bin = std::getenv(override_env)) return bin;  // CMake build
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* ws = std::getenv("TEST_WORKSPACE");
  if (srcdir && ws) return std::string(srcdir) + "/" + ws + "/" + rel;
  return rel;
}
std::string TrainBinary() { return RunfilesPath("trainer/nino_train", "NINO_TRAIN_BIN"); }
std::string NowcasterBinary() { return RunfilesPath("nowcaster/nino_nowcaster", "NINO_NOWCASTER_BIN"); }

std::string SharedDir() {
  const char* env = std::getenv("NINO_SHARED_DIR");
  return env && *env ? env : NINO_SHARED_DIR_DEFAULT;
}

// A loopback socket bound to a free port; listening (accepting nothing) when `listen_on`.
struct Socket {
  int fd = -1;
  int port = 0;
  explicit Socket(bool listen_on) {
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
  ~Socket() { Close(); }
  void Close() {
    if (fd >= 0) close(fd);
    fd = -1;
  }
};

int FreePort() {
  Socket s(false);
  return s.port;
}

struct Proc {
  pid_t pid = -1;
  std::string log;
};

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

// Waits up to `seconds`; kills the process on timeout. The exit code, -signal, or -1000.
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
  auto file = nino::io::LoadTorchFile(run_dir + "/checkpoint.pt");
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return torch::zeros({1});
  auto sd = nino::io::ToNamedTensors(*file->Find("model"));
  std::vector<torch::Tensor> flat;
  for (const auto& [k, t] : *sd) flat.push_back(t.reshape({-1}));
  return torch::cat(flat);
}

// The integer after "key": in summary.json, or -1.
int64_t JsonInt(const std::string& json, const std::string& key) {
  const std::string k = "\"" + key + "\":";
  const size_t at = json.find(k);
  return at == std::string::npos ? -1 : std::atoll(json.c_str() + at + k.size());
}

class NowcasterE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists("/usr/share/datasets/fashion-mnist") && !std::getenv("NINO_FASHION_MNIST_DIR")) {
      GTEST_SKIP() << "FashionMNIST absent: install dataset-fashion-mnist (tools/setup.sh)";
    }
    ckpt_ = SharedDir() + "/reference/checkpoints/nino_mlp.pt";
    if (!fs::exists(ckpt_)) {
      GTEST_SKIP() << "official checkpoint nino_mlp.pt absent under " << SharedDir()
                   << "/reference/checkpoints (set NINO_SHARED_DIR)";
    }
    tmp_ = fs::temp_directory_path() / ("nino_nowcaster_e2e_" + std::to_string(getpid()));
    fs::create_directories(tmp_);
  }
  void TearDown() override {
    if (nowcaster_.pid > 0) {
      kill(nowcaster_.pid, SIGKILL);
      waitpid(nowcaster_.pid, nullptr, 0);
      nowcaster_.pid = -1;
    }
    std::error_code ec;
    if (!tmp_.empty()) fs::remove_all(tmp_, ec);
  }

  // 45 steps, NiNo steps at 20 and 40 (period 20). SGD: float-level differences stay small.
  std::vector<std::string> Args(const std::string& out) {
    return {"--task=fm16", "--steps=45", "--seed=7", "--eval_every=15", "--eval_limit=500",
            "--threads=1", "--log_every=0", "--stop_at_target=false", "--checkpoint_every=0",
            "--period=20", "--optimizer=sgd", "--lr=0.05", "--out_dir=" + out};
  }

  // Two workers (torchrun environment); returns their exit codes.
  std::vector<int> RunTwoWorkers(const std::vector<std::string>& args, const std::string& name,
                                 int seconds = 120) {
    const std::string port = std::to_string(FreePort());
    std::vector<Proc> ranks;
    for (int r = 0; r < 2; ++r) {
      ranks.push_back(Start(TrainBinary(), args,
                            {"RANK=" + std::to_string(r), "LOCAL_RANK=" + std::to_string(r),
                             "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + port},
                            (tmp_ / (name + ".rank" + std::to_string(r) + ".log")).string()));
    }
    std::vector<int> codes;
    for (auto& p : ranks) codes.push_back(Wait(p, seconds));
    return codes;
  }

  // Starts nino_nowcaster on a free loopback port; returns the port (0 on failure).
  int StartNowcaster() {
    const std::string log = (tmp_ / "nowcaster.log").string();
    nowcaster_ = Start(NowcasterBinary(),
                       {"--address=127.0.0.1:0", "--metrics_port=0", "--threads=1",
                        "--lame_duck_ms=0", "--shutdown_deadline_ms=2000",
                        "--nino_model=nino_mlp=" + ckpt_},
                       {}, log);
    const std::string marker = "listening on 127.0.0.1:";
    for (int i = 0; i < 600; ++i) {  // 60 s
      const std::string text = Slurp(log);
      const size_t at = text.find(marker);
      if (at != std::string::npos && text.find('\n', at) != std::string::npos) {
        return std::atoi(text.c_str() + at + marker.size());
      }
      int status = 0;
      if (waitpid(nowcaster_.pid, &status, WNOHANG) == nowcaster_.pid) {
        nowcaster_.pid = -1;
        ADD_FAILURE() << "nino_nowcaster exited at start:\n" << text;
        return 0;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "nino_nowcaster printed no address:\n" << Slurp(log);
    return 0;
  }

  std::string ckpt_;
  fs::path tmp_;
  Proc nowcaster_;
};

TEST_F(NowcasterE2E, RemoteNiNoStepsMatchInProcessOnes) {
  ASSERT_TRUE(fs::exists(NowcasterBinary())) << NowcasterBinary();
  const std::string local = (tmp_ / "local").string(), remote = (tmp_ / "remote").string();
  auto local_args = Args(local);
  local_args.push_back("--nino_ckpt=" + ckpt_);
  for (int code : RunTwoWorkers(local_args, "local")) {
    ASSERT_EQ(code, 0) << Slurp((tmp_ / "local.rank0.log").string())
                       << Slurp((tmp_ / "local.rank1.log").string());
  }

  const int port = StartNowcaster();
  ASSERT_GT(port, 0);
  auto remote_args = Args(remote);
  remote_args.push_back("--nowcaster=127.0.0.1:" + std::to_string(port));
  remote_args.push_back("--nino_model=nino_mlp");
  for (int code : RunTwoWorkers(remote_args, "remote")) {
    ASSERT_EQ(code, 0) << Slurp((tmp_ / "remote.rank0.log").string())
                       << Slurp((tmp_ / "remote.rank1.log").string());
  }
  const std::string rank0 = Slurp((tmp_ / "remote.rank0.log").string());
  EXPECT_NE(rank0.find("registered job"), std::string::npos) << rank0;

  const std::string s_local = Slurp(local + "/summary.json"), s_remote = Slurp(remote + "/summary.json");
  EXPECT_EQ(JsonInt(s_local, "nino_steps"), 2) << s_local;
  EXPECT_EQ(JsonInt(s_local, "nino_failures"), 0) << s_local;
  EXPECT_EQ(JsonInt(s_remote, "nino_steps"), 2) << s_remote;
  EXPECT_EQ(JsonInt(s_remote, "nino_failures"), 0) << s_remote << rank0 << Slurp((tmp_ / "nowcaster.log").string());

  torch::Tensor a = FinalParams(local), b = FinalParams(remote);
  ASSERT_EQ(a.sizes(), b.sizes());
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-6) << "remote NiNo steps differ from in-process ones";
  // Every rank ends with the same parameters, bit for bit.
  EXPECT_EQ(Slurp(remote + "/rank0.params.sha256"), Slurp(remote + "/rank1.params.sha256"));

  // SIGTERM stops the nowcaster cleanly.
  ASSERT_EQ(kill(nowcaster_.pid, SIGTERM), 0);
  EXPECT_EQ(Wait(nowcaster_, 30), 0) << Slurp((tmp_ / "nowcaster.log").string());
  nowcaster_.pid = -1;
}

TEST_F(NowcasterE2E, NoNowcasterListeningMeansFailedNiNoStepsNotAFailedRun) {
  const std::string out = (tmp_ / "absent").string();
  auto args = Args(out);
  args.push_back("--nowcaster=127.0.0.1:" + std::to_string(FreePort()));  // nothing listens
  args.push_back("--nowcaster_timeout_ms=5000");
  const auto t0 = std::chrono::steady_clock::now();
  for (int code : RunTwoWorkers(args, "absent", 60)) {
    ASSERT_EQ(code, 0) << Slurp((tmp_ / "absent.rank0.log").string());
  }
  const std::string summary = Slurp(out + "/summary.json");
  EXPECT_EQ(JsonInt(summary, "steps_done"), 45) << summary;
  EXPECT_EQ(JsonInt(summary, "nino_steps"), 2) << summary;
  EXPECT_EQ(JsonInt(summary, "nino_failures"), 2) << summary;
  EXPECT_NE(Slurp(out + "/metrics.jsonl").find("\"applied\":false"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(45));
}

TEST_F(NowcasterE2E, AnUnresponsiveNowcasterCannotHangTraining) {
  // A socket that listens but never answers: every call can only end by its deadline.
  Socket black_hole(true);
  const std::string out = (tmp_ / "hang").string();
  auto args = Args(out);
  args.push_back("--nowcaster=127.0.0.1:" + std::to_string(black_hole.port));
  args.push_back("--nowcaster_timeout_ms=2000");
  const auto t0 = std::chrono::steady_clock::now();
  for (int code : RunTwoWorkers(args, "hang", 60)) {
    ASSERT_EQ(code, 0) << Slurp((tmp_ / "hang.rank0.log").string());
  }
  const std::string summary = Slurp(out + "/summary.json");
  EXPECT_EQ(JsonInt(summary, "steps_done"), 45) << summary;
  EXPECT_EQ(JsonInt(summary, "nino_steps"), 2) << summary;
  EXPECT_EQ(JsonInt(summary, "nino_failures"), 2) << summary;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(50));
}

}  // namespace
