// checkpoint.pt: round trip, and every way a file can be damaged is a clear error, never a crash.
#include "trainer/train_checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "common/io/torch_file.h"

namespace nino::trainer {
namespace {
namespace fs = std::filesystem;
using io::PickleValue;

class TrainCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("nino_ckpt_test_" + std::to_string(getpid()));
    fs::create_directories(dir_);
    path_ = (dir_ / "checkpoint.pt").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  static TrainCheckpoint Sample() {
    TrainCheckpoint c;
    c.task = "fm16";
    c.seed = 7;
    c.step = 1234;
    c.model = {{"fc.weight", torch::arange(6, torch::kFloat32).reshape({2, 3})},
               {"fc.bias", torch::ones({2})}};
    c.optimizer = PickleValue::Dict({});
    c.nino_step_idx = 1234;
    c.nino_history = {torch::full({8}, 1.0f), torch::full({8}, 2.0f)};
    c.reached_at = -1;
    c.best_metric = 81.5;
    c.nino_steps = 1;
    c.nino_failures = 0;
    return c;
  }
  // Saves the sample, then lets `edit` change the decoded top-level dict, and saves that.
  void WriteEdited(
      const std::function<void(std::vector<std::pair<PickleValue, PickleValue>>&)>& edit) {
    ASSERT_TRUE(SaveTrainCheckpoint(path_, Sample()).ok());
    auto top = io::LoadTorchFile(path_);
    ASSERT_TRUE(top.ok());
    edit(top->mutable_dict_items());
    ASSERT_TRUE(io::SaveTorchFile(path_, *top).ok());
  }
  static void Erase(std::vector<std::pair<PickleValue, PickleValue>>& items,
                    const std::string& key) {
    for (auto it = items.begin(); it != items.end(); ++it) {
      if (it->first.is_string() && it->first.as_string() == key) {
        items.erase(it);
        return;
      }
    }
    FAIL() << "no key " << key;
  }
  static void Set(std::vector<std::pair<PickleValue, PickleValue>>& items, const std::string& key,
                  PickleValue v) {
    for (auto& [k, val] : items) {
      if (k.is_string() && k.as_string() == key) val = std::move(v);
    }
  }

  fs::path dir_;
  std::string path_;
};

TEST_F(TrainCheckpointTest, RoundTrip) {
  ASSERT_TRUE(SaveTrainCheckpoint(path_, Sample()).ok());
  auto c = LoadTrainCheckpoint(path_);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->task, "fm16");
  EXPECT_EQ(c->seed, 7u);
  EXPECT_EQ(c->step, 1234);
  ASSERT_EQ(c->model.size(), 2u);
  EXPECT_TRUE(torch::equal(c->model[0].second, Sample().model[0].second));
  ASSERT_EQ(c->nino_history.size(), 2u);
  EXPECT_TRUE(torch::equal(c->nino_history[1], torch::full({8}, 2.0f)));
  EXPECT_EQ(c->best_metric, 81.5);
  EXPECT_EQ(c->nino_steps, 1);
}

TEST_F(TrainCheckpointTest, EveryMissingEntryIsDataLossNamingIt) {
  for (const std::string key : {"task", "model", "optimizer", "nino", "step", "reached_at",
                                "best_metric", "nino_steps", "nino_failures", "seed"}) {
    WriteEdited([&](auto& items) { Erase(items, key); });
    auto c = LoadTrainCheckpoint(path_);
    ASSERT_FALSE(c.ok()) << key;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kDataLoss) << key << ": " << c.status();
    EXPECT_NE(c.status().message().find("'" + key + "'"), std::string::npos) << c.status();
  }
}

TEST_F(TrainCheckpointTest, EntriesOfTheWrongTypeAreDataLoss) {
  const std::vector<std::pair<std::string, PickleValue>> bad = {
      {"step", PickleValue::String("12")},
      {"best_metric", PickleValue::String("x")},
      {"model", PickleValue::Int(3)},
      {"optimizer", PickleValue::List({})},
      {"nino", PickleValue::Dict({{PickleValue::String("step_idx"), PickleValue::Int(1)}})},
      {"nino", PickleValue::Dict(
                   {{PickleValue::String("step_idx"), PickleValue::Int(1)},
                    {PickleValue::String("history"), PickleValue::List({PickleValue::Int(1)})}})},
      {"task", PickleValue::Int(1)},
  };
  for (const auto& [key, value] : bad) {
    WriteEdited([&](auto& items) { Set(items, key, value); });
    auto c = LoadTrainCheckpoint(path_);
    ASSERT_FALSE(c.ok()) << key;
    EXPECT_EQ(c.status().code(), absl::StatusCode::kDataLoss) << key << ": " << c.status();
    EXPECT_NE(c.status().message().find(key), std::string::npos) << c.status();
  }
}

TEST_F(TrainCheckpointTest, OtherFormatsAreRefused) {
  WriteEdited([&](auto& items) { Set(items, "format", PickleValue::String("nino_train/0")); });
  auto c = LoadTrainCheckpoint(path_);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition) << c.status();
  EXPECT_NE(c.status().message().find("nino_train/1"), std::string::npos);
  WriteEdited([&](auto& items) { Erase(items, "format"); });
  EXPECT_EQ(LoadTrainCheckpoint(path_).status().code(), absl::StatusCode::kFailedPrecondition);
  // A bare state dict (what torch.save(model.state_dict()) writes) is no training checkpoint.
  ASSERT_TRUE(io::SaveTorchFile(path_, io::StateDictValue(Sample().model)).ok());
  EXPECT_EQ(LoadTrainCheckpoint(path_).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(TrainCheckpointTest, TruncatedFilesAreErrorsNamingTheFile) {
  ASSERT_TRUE(SaveTrainCheckpoint(path_, Sample()).ok());
  const auto size = fs::file_size(path_);
  for (auto keep : {size / 2, size - 10, uintmax_t{0}}) {
    ASSERT_TRUE(SaveTrainCheckpoint(path_, Sample()).ok());
    fs::resize_file(path_, keep);
    auto c = LoadTrainCheckpoint(path_);
    ASSERT_FALSE(c.ok()) << keep;
    EXPECT_NE(c.status().message().find(path_), std::string::npos) << c.status();
  }
}

TEST(AdamWState, RoundTripAndMalformedEntries) {
  torch::nn::Linear fc(3, 2);
  torch::optim::AdamW opt(fc->parameters(), torch::optim::AdamWOptions(0.1));
  fc->forward(torch::ones({1, 3})).sum().backward();
  opt.step();
  NamedParamList named;
  for (const auto& p : fc->named_parameters()) named.push_back({p.key(), p.value()});
  const PickleValue saved = AdamWStateByName(opt, named);
  torch::optim::AdamW fresh(fc->parameters(), torch::optim::AdamWOptions(0.1));
  ASSERT_TRUE(RestoreAdamWState(fresh, saved, named).ok());
  EXPECT_EQ(fresh.state().size(), 2u);
  const PickleValue bad =
      PickleValue::Dict({{PickleValue::String("weight"), PickleValue::Dict({})}});
  absl::Status s = RestoreAdamWState(fresh, bad, named);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("optimizer.weight"), std::string::npos) << s;
}

}  // namespace
}  // namespace nino::trainer
