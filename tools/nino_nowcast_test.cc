// The nino_nowcast binary with --model_description (issue 15): a LeNet-5 (which the parameter
// names map to no graph) is nowcast from its description file, the output holds the in-process
// engine's prediction, and a bad description or a conflicting --graph exits 1 writing nothing.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "common/io/torch_file.h"
#include "common/nino/default_model.h"
#include "common/nino/model_description.h"
#include "common/nino/nowcast_engine.h"
#include "tests/testing/described_models.h"
#include "tests/testing/process_util.h"

namespace nino::tools {
namespace {

namespace fs = std::filesystem;

class NinoNowcastBinaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / "nino_nowcast_binary";
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    auto table = MakeParamTable(testing::LeNet5Layout());
    ASSERT_TRUE(table.ok());
    table_ = *table;
    states_ = testing::SmoothStates(TotalParams(table_), /*seed=*/5);
    for (int s = 0; s < 5; ++s) {
      io::NamedTensors sd;
      for (const ParamSpec& p : table_) {
        sd.push_back({p.name, states_[s].narrow(0, p.offset, p.numel).reshape(p.shape).clone()});
      }
      states_files_.push_back((dir_ / ("s" + std::to_string(s) + ".pt")).string());
      ASSERT_TRUE(io::SaveTorchFile(states_files_.back(), io::StateDictValue(sd)).ok());
    }
    description_ = Write("lenet5.json", ModelDescriptionToJson(testing::LeNet5Description()));
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    EXPECT_TRUE(testing::WriteFile(path, text));
    return path;
  }

  // Runs nino_nowcast (the built-in model, k 12, one thread) with `extra` flags; the exit code.
  int Run(const std::vector<std::string>& extra, const std::string& out, std::string* log) {
    std::vector<std::string> args = {"--states=" + absl::StrJoin(states_files_, ","),
                                     "--out=" + out, "--k=12", "--threads=1",
                                     "--nino_model=default"};
    args.insert(args.end(), extra.begin(), extra.end());
    const std::string log_path = (dir_ / "log.txt").string();
    testing::Proc p =
        testing::Start(testing::RunfilesPath("tools/nino_nowcast"), args, {}, log_path);
    const int code = testing::Wait(p, 120);
    *log = testing::Slurp(log_path);
    return code;
  }

  fs::path dir_;
  std::vector<ParamSpec> table_;
  torch::Tensor states_;
  std::vector<std::string> states_files_;
  std::string description_;
};

TEST_F(NinoNowcastBinaryTest, NowcastsAModelFromItsDescriptionFile) {
  const std::string out = (dir_ / "nowcast.pt").string();
  std::string log;
  ASSERT_EQ(Run({"--model_description=" + description_}, out, &log), 0) << log;
  EXPECT_NE(log.find("described graph"), std::string::npos) << log;

  auto model = LoadDefaultModel();
  ASSERT_TRUE(model.ok()) << model.status();
  auto engine = NowcastEngine::Create(std::make_shared<const NiNoModel>(std::move(*model)), table_,
                                      testing::DescribedGraph(testing::LeNet5Description()));
  ASSERT_TRUE(engine.ok()) << engine.status();
  auto want = (*engine)->Nowcast(states_, 12);
  ASSERT_TRUE(want.ok()) << want.status();
  auto written = io::LoadTorchFile(out);
  ASSERT_TRUE(written.ok()) << written.status();
  auto sd = io::ToNamedTensors(*written);
  ASSERT_TRUE(sd.ok()) << sd.status();
  std::vector<torch::Tensor> flat;
  for (const auto& [name, t] : *sd) flat.push_back(t.reshape({-1}));
  EXPECT_LT((torch::cat(flat) - *want).abs().max().item<double>(), 1e-6);
}

TEST_F(NinoNowcastBinaryTest, ABadDescriptionOrAConflictingGraphKindExitsOneAndWritesNothing) {
  const std::string out = (dir_ / "nowcast.pt").string();
  std::string log;
  ModelDescription wrong = testing::LeNet5Description();
  wrong.ops.back().bias = "fc9.bias";
  const std::string bad = Write("bad.json", ModelDescriptionToJson(wrong));
  EXPECT_EQ(Run({"--model_description=" + bad}, out, &log), 1) << log;
  EXPECT_NE(log.find("bad.json"), std::string::npos) << log;
  EXPECT_NE(log.find("fc9.bias"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(out));

  EXPECT_EQ(
      Run({"--model_description=" + description_, "--graph=gpt2", "--num_heads=2"}, out, &log), 1)
      << log;
  EXPECT_NE(log.find("exclude each other"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
}  // namespace nino::tools
