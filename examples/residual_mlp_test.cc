// The residual-MLP example trains with NiNo steps from a real nino_nowcaster, alone and as two
// data-parallel workers (identical final parameters on both), and without a nowcaster it fails
// over to plain Adam steps.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "tests/testing/process_util.h"

namespace {
namespace fs = std::filesystem;
using namespace nino::testing;  // NOLINT: test helpers

// The last line of `log` that parses as a JSON object.
nlohmann::json Summary(const std::string& log) {
  nlohmann::json last;
  std::istringstream in(Slurp(log));
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object()) last = j;
  }
  return last;
}

class ResidualMlpExample : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists("/usr/share/datasets/fashion-mnist"))
      GTEST_SKIP() << "install dataset-fashion-mnist";
    tmp_ = fs::path(::testing::TempDir()) / ("nino_example_" + std::to_string(getpid()));
    fs::create_directories(tmp_);
  }
  void TearDown() override {
    if (server_.pid > 0) {
      kill(server_.pid, SIGKILL);
      waitpid(server_.pid, nullptr, 0);
    }
    fs::remove_all(tmp_);
  }
  int StartNowcaster() {
    return StartNowcasterProcess({"--nino_model=nino_no_posw=" +
                                  RunfilesPath("tools/synthetic_nino.pt", "NINO_SYNTHETIC_CKPT")},
                                 (tmp_ / "nowcaster.log").string(), &server_);
  }
  std::vector<std::string> Args(int port) {
    return {"--steps=60",    "--period=20", "--train_limit=4096",
            "--log_every=0", "--batch=64",  "--nowcaster=127.0.0.1:" + std::to_string(port)};
  }
  std::string Example() { return RunfilesPath("examples/residual_mlp", "NINO_EXAMPLE_BIN"); }

  fs::path tmp_;
  Proc server_;
};

TEST_F(ResidualMlpExample, TrainsWithNiNoStepsFromTheNowcaster) {
  const int port = StartNowcaster();
  ASSERT_GT(port, 0);
  const std::string log = (tmp_ / "one.log").string();
  ASSERT_EQ(Wait(Start(Example(), Args(port), {}, log), 180), 0) << Slurp(log);
  const nlohmann::json s = Summary(log);
  EXPECT_EQ(s["nino_steps"], 3) << s;  // calls 19, 39, 59 (period 20, ctx 5)
  EXPECT_EQ(s["nino_applied"], 3) << Slurp(log);
  EXPECT_GE(s["snapshot_uploads"].get<int>(), 12) << s;
  EXPECT_GT(s["test_accuracy"].get<double>(), 30.0) << s;
}

TEST_F(ResidualMlpExample, TwoWorkersEndIdentical) {
  const int port = StartNowcaster();
  ASSERT_GT(port, 0);
  const std::string master = std::to_string(FreePort());
  std::vector<Proc> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.push_back(Start(Example(), Args(port),
                          {"RANK=" + std::to_string(r), "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1",
                           "MASTER_PORT=" + master},
                          (tmp_ / ("rank" + std::to_string(r) + ".log")).string()));
  }
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(Wait(ranks[r], 180), 0)
        << Slurp((tmp_ / ("rank" + std::to_string(r) + ".log")).string());
  }
  const nlohmann::json a = Summary((tmp_ / "rank0.log").string()),
                       b = Summary((tmp_ / "rank1.log").string());
  EXPECT_EQ(a["nino_applied"], 3) << a;
  EXPECT_EQ(b["nino_applied"], 3) << b;
  EXPECT_EQ(a["params_sha256"], b["params_sha256"]);
}

TEST_F(ResidualMlpExample, ADeadNowcasterFallsBackToAdam) {
  LoopbackSocket nobody(/*listen_on=*/false);
  const int port = nobody.port;
  nobody.Close();
  auto args = Args(port);
  args[0] = "--steps=40";
  const std::string log = (tmp_ / "dead.log").string();
  ASSERT_EQ(Wait(Start(Example(), args, {}, log), 180), 0) << Slurp(log);
  const nlohmann::json s = Summary(log);
  EXPECT_EQ(s["nino_steps"], 2) << s;
  EXPECT_EQ(s["nino_fallbacks"], 2) << s;
}

}  // namespace
