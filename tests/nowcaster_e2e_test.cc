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
#include "tests/testing/process_util.h"
#include "tests/testing/synthetic_checkpoint.h"

namespace {
namespace fs = std::filesystem;

using namespace nino::testing;  // NOLINT: test helpers
using Socket = LoopbackSocket;

// The integer after "key": in summary.json, or -1.
int64_t JsonInt(const std::string& json, const std::string& key) {
  const std::string k = "\"" + key + "\":";
  const size_t at = json.find(k);
  return at == std::string::npos ? -1 : std::atoll(json.c_str() + at + k.size());
}

class NowcasterE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists("/usr/share/datasets/fashion-mnist") &&
        !std::getenv("NINO_FASHION_MNIST_DIR")) {
      GTEST_SKIP() << "FashionMNIST absent: install dataset-fashion-mnist (tools/setup.sh)";
    }
    // The remote and the in-process run use the same NiNo: a synthetic GNN in nino_no_posw.pt's
    // layout does (no ../shared needed).
    ckpt_ = SharedSyntheticCheckpoint(SyntheticNiNo::kGnn);
    ASSERT_FALSE(ckpt_.empty());
    tmp_ = MakeTestDir("nino_nowcaster_e2e");
    ASSERT_FALSE(tmp_.empty());
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
    return {"--task=fm16",          "--steps=45",  "--seed=7",        "--eval_every=15",
            "--eval_limit=500",     "--threads=1", "--log_every=0",   "--stop_at_target=false",
            "--checkpoint_every=0", "--period=20", "--optimizer=sgd", "--lr=0.05",
            "--out_dir=" + out};
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
    return StartNowcasterProcess(
        {"--shutdown_deadline_ms=2000", "--nino_model=nino_no_posw=" + ckpt_},
        (tmp_ / "nowcaster.log").string(), &nowcaster_);
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
  remote_args.push_back("--nino_model=nino_no_posw");
  for (int code : RunTwoWorkers(remote_args, "remote")) {
    ASSERT_EQ(code, 0) << Slurp((tmp_ / "remote.rank0.log").string())
                       << Slurp((tmp_ / "remote.rank1.log").string());
  }
  const std::string rank0 = Slurp((tmp_ / "remote.rank0.log").string());
  EXPECT_NE(rank0.find("registered job"), std::string::npos) << rank0;

  const std::string s_local = Slurp(local + "/summary.json"),
                    s_remote = Slurp(remote + "/summary.json");
  EXPECT_EQ(JsonInt(s_local, "nino_steps"), 2) << s_local;
  EXPECT_EQ(JsonInt(s_local, "nino_failures"), 0) << s_local;
  EXPECT_EQ(JsonInt(s_remote, "nino_steps"), 2) << s_remote;
  EXPECT_EQ(JsonInt(s_remote, "nino_failures"), 0)
      << s_remote << rank0 << Slurp((tmp_ / "nowcaster.log").string());

  torch::Tensor a = FinalParams(local), b = FinalParams(remote);
  ASSERT_EQ(a.sizes(), b.sizes());
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-6)
      << "remote NiNo steps differ from in-process ones";
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
