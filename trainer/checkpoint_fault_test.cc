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

#include "absl/status/statusor.h"
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

bool HaveFashionMnist() {
  return fs::exists(DefaultFashionMnistDir() + "/train-images-idx3-ubyte.gz");
}

TrainOptions Options(const std::string& out) {
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
std::vector<std::string> Temporaries(const std::string& out) {
  std::vector<std::string> bad;
  for (const auto& e : fs::directory_iterator(out)) {
    const std::string name = e.path().filename();
    if (absl::StrContains(name, ".tmp")) bad.push_back(name);
  }
  return bad;
}

int64_t CheckpointStep(const std::string& out) {
  auto c = LoadTrainCheckpoint(out + "/checkpoint.pt");
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? c->step : -1;
}

// One uninterrupted run, shared by the tests: written through a FaultInjectionEnv without
// faults, then a power loss is simulated.
class CheckpointFaultTest : public ::testing::TestWithParam<Op> {
 protected:
  static void SetUpTestSuite() {
    root_ = new fs::path(fs::path(::testing::TempDir()) / "checkpoint_fault_test");
    fs::remove_all(*root_);
    fs::create_directories(*root_);
    if (!HaveFashionMnist()) return;
    FaultInjectionEnv env;
    whole_ = new absl::StatusOr<TrainSummary>(RunTraining(Options(WholeDir()), &env));
    power_loss_ = new absl::Status(env.DropUnsyncedData());
  }
  static void TearDownTestSuite() {
    fs::remove_all(*root_);
    delete root_;
    delete whole_;
    delete power_loss_;
  }
  void SetUp() override {
    ASSERT_TRUE(HaveFashionMnist())
        << "FashionMNIST is missing from " << DefaultFashionMnistDir()
        << ": install the Debian package dataset-fashion-mnist (tools/setup.sh)";
    ASSERT_TRUE(whole_->ok()) << whole_->status();
    ASSERT_EQ((*whole_)->steps_done, kSteps);
    ASSERT_TRUE(power_loss_->ok()) << *power_loss_;
  }
  static std::string WholeDir() { return (*root_ / "whole").string(); }

  static fs::path* root_;
  static absl::StatusOr<TrainSummary>* whole_;
  static absl::Status* power_loss_;
};
fs::path* CheckpointFaultTest::root_ = nullptr;
absl::StatusOr<TrainSummary>* CheckpointFaultTest::whole_ = nullptr;
absl::Status* CheckpointFaultTest::power_loss_ = nullptr;

// A power loss right after RunTraining returns keeps everything it wrote: the final checkpoint,
// summary.json and the hash file were made durable (file and folder fsync).
TEST_F(CheckpointFaultTest, APowerLossAfterTheRunKeepsItsOutputs) {
  EXPECT_EQ(CheckpointStep(WholeDir()), kSteps);
  EXPECT_GT(fs::file_size(WholeDir() + "/summary.json"), 0u);
  EXPECT_GT(fs::file_size(WholeDir() + "/rank0.params.sha256"), 0u);
  EXPECT_TRUE(Temporaries(WholeDir()).empty());
}

TEST_P(CheckpointFaultTest, AFaultKeepsThePreviousCheckpointAndTheRerunResumesExactly) {
  const Op op = GetParam();
  const std::string out = (*root_ / ("fault_" + std::to_string(static_cast<int>(op)))).string();
  FaultInjectionEnv env;
  TrainOptions o = Options(out);
  // Armed after step 9, so the fault hits checkpoint 10. A write fails in the middle of the file
  // (its 3rd append), leaving a torn temporary on disk until it is removed.
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
  // Before the power loss a reader sees a whole checkpoint: the previous one, or the new one when
  // only the folder fsync failed (the rename was done).
  EXPECT_EQ(CheckpointStep(out), op == Op::kSyncDir ? 2 * kEvery : kEvery);

  ASSERT_TRUE(env.DropUnsyncedData().ok());
  EXPECT_TRUE(Temporaries(out).empty());
  EXPECT_EQ(CheckpointStep(out), kEvery);  // what was durable before the fault

  auto resumed = RunTraining(Options(out), &env);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->steps_done, kSteps);
  EXPECT_EQ(resumed->params_sha256, (*whole_)->params_sha256) << "the resumed run diverged";
  EXPECT_EQ(CheckpointStep(out), kSteps);
}

INSTANTIATE_TEST_SUITE_P(EachFault, CheckpointFaultTest,
                         ::testing::Values(Op::kOpen, Op::kWrite, Op::kSync, Op::kRename,
                                           Op::kSyncDir),
                         [](const ::testing::TestParamInfo<Op>& info) {
                           switch (info.param) {
                             case Op::kOpen:
                               return std::string("Open");
                             case Op::kWrite:
                               return std::string("Write");
                             case Op::kSync:
                               return std::string("Fsync");
                             case Op::kRename:
                               return std::string("Rename");
                             default:
                               return std::string("DirFsync");
                           }
                         });

}  // namespace
}  // namespace nino::trainer
