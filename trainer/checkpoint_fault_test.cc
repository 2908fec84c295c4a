// Training checkpoints under injected I/O faults and power loss (FaultInjectionEnv): each of
// open, write, fsync, rename and folder fsync fails in turn while checkpoint.pt is written. The
// error comes back from RunTraining (no crash), no half-written file is ever in the run folder,
// the previous checkpoint loads before and after a simulated power loss, and a restarted run ends
// with exactly the parameters of an uninterrupted one. FM-16 with plain Adam on real
// FashionMNIST (the Debian package dataset-fashion-mnist), a few steps per run.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "common/env/fault_injection_env.h"
#include "trainer/data/fashion_mnist.h"
#include "trainer/train_checkpoint.h"
#include "trainer/trainer.h"

namespace nino::trainer {
namespace {
namespace fs = std::filesystem;
using Op = FaultInjectionEnv::Op;

constexpr int64_t kSteps = 15;
constexpr int64_t kEvery = 5;  // checkpoints at 5, 10 and 15; the faults hit the one at 10

class CheckpointFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(DefaultFashionMnistDir() + "/train-images-idx3-ubyte.gz"))
        << "FashionMNIST is missing from " << DefaultFashionMnistDir()
        << ": install the Debian package dataset-fashion-mnist (tools/setup.sh)";
    dir_ = fs::path(::testing::TempDir()) / "checkpoint_fault_test";
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  TrainOptions Options(const std::string& out) const {
    TrainOptions o;
    o.task = "fm16";
    o.steps = kSteps;
    o.seed = 7;
    o.batch = 32;
    o.eval_every = 0;
    o.eval_limit = 200;
    o.log_every = 0;
    o.checkpoint_every = kEvery;
    o.stop_at_target = false;
    o.threads = 1;
    o.quiet = true;
    o.out_dir = out;
    return o;
  }

  // Files in `out` that are not a finished output (temporaries of an atomic write).
  static std::vector<std::string> Temporaries(const std::string& out) {
    std::vector<std::string> bad;
    for (const auto& e : fs::directory_iterator(out)) {
      const std::string name = e.path().filename();
      if (absl::StrContains(name, ".tmp")) bad.push_back(name);
    }
    return bad;
  }

  static int64_t CheckpointStep(const std::string& out) {
    auto c = LoadTrainCheckpoint(out + "/checkpoint.pt");
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? c->step : -1;
  }

  fs::path dir_;
};

TEST_F(CheckpointFaultTest, EveryFaultKeepsThePreviousCheckpointAndResumesExactly) {
  auto whole = RunTraining(Options((dir_ / "whole").string()));
  ASSERT_TRUE(whole.ok()) << whole.status();
  ASSERT_EQ(whole->steps_done, kSteps);

  for (Op op : {Op::kOpen, Op::kWrite, Op::kSync, Op::kRename, Op::kSyncDir}) {
    SCOPED_TRACE(FaultInjectionEnv::OpName(op));
    const std::string out = (dir_ / ("fault_" + std::to_string(static_cast<int>(op)))).string();
    FaultInjectionEnv env;
    TrainOptions o = Options(out);
    // Armed after step 9, so the fault hits checkpoint 10. A write fails in the middle of the
    // file (its 3rd append), leaving a torn temporary behind it on disk until it is removed.
    o.after_step = [&](int64_t step) {
      if (step == 2 * kEvery - 1) {
        env.FailNth(op, op == Op::kWrite ? 3 : 1, op == Op::kSyncDir ? out : "checkpoint.pt");
      }
    };
    auto failed = RunTraining(o, &env);
    ASSERT_FALSE(failed.ok()) << "the fault was not reported";
    EXPECT_TRUE(absl::StrContains(failed.status().message(), "injected fault")) << failed.status();
    EXPECT_TRUE(absl::StrContains(failed.status().message(), "checkpoint.pt")) << failed.status();
    EXPECT_EQ(env.injected(), 1);
    EXPECT_TRUE(Temporaries(out).empty());
    // Before the power loss a reader sees a whole checkpoint: the previous one, or the new one
    // when only the folder fsync failed (the rename was done).
    EXPECT_EQ(CheckpointStep(out), op == Op::kSyncDir ? 2 * kEvery : kEvery);

    ASSERT_TRUE(env.DropUnsyncedData().ok());
    EXPECT_TRUE(Temporaries(out).empty());
    EXPECT_EQ(CheckpointStep(out), kEvery);  // what was durable before the fault

    auto resumed = RunTraining(Options(out), &env);
    ASSERT_TRUE(resumed.ok()) << resumed.status();
    EXPECT_EQ(resumed->steps_done, kSteps);
    EXPECT_EQ(resumed->params_sha256, whole->params_sha256) << "the resumed run diverged";
    EXPECT_EQ(CheckpointStep(out), kSteps);
  }
}

// A power loss right after RunTraining returns keeps everything it wrote: the final checkpoint
// and summary were made durable (file and folder fsync).
TEST_F(CheckpointFaultTest, APowerLossAfterTheRunKeepsItsOutputs) {
  const std::string out = (dir_ / "done").string();
  FaultInjectionEnv env;
  auto done = RunTraining(Options(out), &env);
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_TRUE(env.DropUnsyncedData().ok());
  EXPECT_EQ(CheckpointStep(out), kSteps);
  EXPECT_TRUE(fs::exists(out + "/summary.json"));
  EXPECT_GT(fs::file_size(out + "/summary.json"), 0u);
  EXPECT_GT(fs::file_size(out + "/rank0.params.sha256"), 0u);
  EXPECT_TRUE(Temporaries(out).empty());
}

}  // namespace
}  // namespace nino::trainer
