// The offline NiNo step: the written checkpoint holds exactly the engine's prediction (in the
// inputs' dtypes, inside the inputs' container), and bad inputs change nothing.
#include "tools/offline_nowcast.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/io/torch_file.h"
#include "common/nino/default_model.h"
#include "common/nino/model_description.h"
#include "common/nino/nino_model.h"
#include "common/nino/nowcast_engine.h"
#include "tools/bench_models.h"

namespace nino::tools {
namespace {

namespace fs = std::filesystem;
using io::PickleValue;

// The project's own model, built into the test (common/nino/default_model.h): no ../shared.
const char kModel[] = "default";

class OfflineNowcastTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / "offline_nowcast";
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes ctx files {"model": state dict (+ a BatchNorm-style buffer), "completed_steps": s}.
  std::vector<std::string> WriteStates(const bench::BenchModel& m, const torch::Tensor& states,
                                       bool wrap) {
    std::vector<std::string> paths;
    for (int s = 0; s < 5; ++s) {
      io::NamedTensors sd;
      int64_t off = 0;
      for (const auto& [n, shape] : m.shapes) {
        int64_t numel = 1;
        for (int64_t d : shape) numel *= d;
        sd.push_back({n, states[s].narrow(0, off, numel).reshape(shape).clone()});
        off += numel;
        if (n == "fc.0.bias") sd.push_back({"bn.running_mean", torch::full({16}, 0.5 + s)});
      }
      PickleValue v = io::StateDictValue(sd);
      if (wrap) {
        v = PickleValue::Dict(
            {{PickleValue::String("model"), v},
             {PickleValue::String("completed_steps"), PickleValue::Int(600 + 200 * s)}});
      }
      paths.push_back((dir_ / ("step" + std::to_string(600 + 200 * s) + ".pt")).string());
      EXPECT_TRUE(io::SaveTorchFile(paths.back(), v).ok());
    }
    return paths;
  }
  fs::path dir_;
};

TEST_F(OfflineNowcastTest, WritesTheEnginesPredictionIntoTheNewestCheckpoint) {
  auto m = bench::MakeBenchModel("fm16", 3);
  ASSERT_TRUE(m.ok());
  auto table = MakeParamTable(m->shapes);
  ASSERT_TRUE(table.ok());
  const torch::Tensor states = bench::SmoothTrajectory(*table, m->init, 3);
  OfflineNowcastOptions o;
  o.states = WriteStates(*m, states, /*wrap=*/true);
  o.nino_model = kModel;
  o.out = (dir_ / "nowcast.pt").string();
  o.step = 1400;  // step_idx 1399 -> the schedule's second entry (33) for 10,000 steps
  auto r = RunOfflineNowcast(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->k, 33);
  EXPECT_EQ(r->graph.kind, GraphSpec::Kind::kGeneric);
  EXPECT_EQ(r->num_params, 14378);

  auto model = LoadDefaultModel();
  ASSERT_TRUE(model.ok());
  auto engine = NowcastEngine::Create(std::make_shared<const NiNoModel>(std::move(*model)), *table,
                                      GraphSpec{});
  ASSERT_TRUE(engine.ok());
  auto expected = (*engine)->Nowcast(states, 33);
  ASSERT_TRUE(expected.ok());

  auto out = io::LoadTorchFile(o.out);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_NE(out->Find("completed_steps"), nullptr);
  EXPECT_EQ(out->Find("completed_steps")->as_int(), 1400);
  auto sd = io::ToNamedTensors(*out->Find("model"));
  ASSERT_TRUE(sd.ok()) << sd.status();
  ASSERT_EQ(sd->size(), 9u);
  std::vector<torch::Tensor> flat;
  for (const auto& [n, t] : *sd) {
    if (n == "bn.running_mean") {
      EXPECT_TRUE(torch::equal(t, torch::full({16}, 4.5)));  // the newest file's buffer, unchanged
      continue;
    }
    flat.push_back(t.reshape({-1}));
  }
  EXPECT_LT((torch::cat(flat) - *expected).abs().max().item<double>(), 1e-6);
  EXPECT_GT((torch::cat(flat) - states[4]).abs().mean().item<double>(), 1e-4);  // it moved
}

TEST_F(OfflineNowcastTest, AcceptsBareStateDictsAndKeepsDtypes) {
  auto m = bench::MakeBenchModel("fm16", 4);
  ASSERT_TRUE(m.ok());
  auto table = MakeParamTable(m->shapes);
  const torch::Tensor states = bench::SmoothTrajectory(*table, m->init, 4);
  OfflineNowcastOptions o;
  o.states = WriteStates(*m, states.to(torch::kFloat64), /*wrap=*/false);
  o.nino_model = kModel;
  o.out = (dir_ / "nowcast.pt").string();
  o.k = 5;
  auto r = RunOfflineNowcast(o);
  ASSERT_TRUE(r.ok()) << r.status();
  auto out = io::LoadTorchFile(o.out);
  ASSERT_TRUE(out.ok());
  auto sd = io::ToNamedTensors(*out);
  ASSERT_TRUE(sd.ok());
  EXPECT_EQ(sd->front().second.scalar_type(), torch::kFloat64);
}

TEST_F(OfflineNowcastTest, BadInputsAreRefusedAndWriteNothing) {
  auto m = bench::MakeBenchModel("fm16", 5);
  ASSERT_TRUE(m.ok());
  auto table = MakeParamTable(m->shapes);
  const torch::Tensor states = bench::SmoothTrajectory(*table, m->init, 5);
  OfflineNowcastOptions o;
  o.states = WriteStates(*m, states, true);
  o.nino_model = kModel;
  o.out = (dir_ / "nowcast.pt").string();
  o.k = 5;

  auto expect_refused = [&](OfflineNowcastOptions bad, const std::string& words) {
    auto r = RunOfflineNowcast(bad);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find(words), std::string::npos) << r.status();
    EXPECT_FALSE(fs::exists(bad.out)) << bad.out;
  };
  OfflineNowcastOptions four = o;
  four.states.pop_back();
  expect_refused(four, "takes 5 states");
  OfflineNowcastOptions no_k = o;
  no_k.k = 0;
  expect_refused(no_k, "horizon");
  OfflineNowcastOptions missing = o;
  missing.states[2] = (dir_ / "absent.pt").string();
  expect_refused(missing, "absent.pt");
  // One file with a differently shaped parameter.
  {
    auto v = io::LoadTorchFile(o.states[1]);
    ASSERT_TRUE(v.ok());
    auto sd = io::ToNamedTensors(*v->Find("model"));
    (*sd)[0].second = torch::zeros({16, 1, 2, 2});
    const std::string p = (dir_ / "shape.pt").string();
    ASSERT_TRUE(io::SaveTorchFile(
                    p, PickleValue::Dict({{PickleValue::String("model"), io::StateDictValue(*sd)}}))
                    .ok());
    OfflineNowcastOptions bad = o;
    bad.states[1] = p;
    expect_refused(bad, "fc.0.weight");
  }
  // NaN in a state.
  {
    auto v = io::LoadTorchFile(o.states[3]);
    auto sd = io::ToNamedTensors(*v->Find("model"));
    ASSERT_EQ((*sd)[3].first, "fc.2.weight");  // [2] is the buffer, which is not nowcast
    (*sd)[3].second = (*sd)[3].second.clone().fill_(NAN);
    const std::string p = (dir_ / "nan.pt").string();
    ASSERT_TRUE(io::SaveTorchFile(p, io::StateDictValue(*sd)).ok());
    OfflineNowcastOptions bad = o;
    bad.states[3] = p;
    expect_refused(bad, "NaN");
  }
  // The output may not overwrite an input.
  OfflineNowcastOptions overwrite = o;
  overwrite.out = o.states[4];
  auto r = RunOfflineNowcast(overwrite);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("overwrite"), std::string::npos);
}

// LeNet-5 (5x5 convolutions, pooling, flatten 16 x 4 x 4, three linear layers): the parameter
// names map to no graph, its description (docs/GRAPH_DESCRIPTION.md) does.
const std::vector<std::pair<std::string, std::vector<int64_t>>>& LeNet5Shapes() {
  static const auto* shapes = new std::vector<std::pair<std::string, std::vector<int64_t>>>{
      {"conv1.weight", {6, 1, 5, 5}},  {"conv1.bias", {6}},
      {"conv2.weight", {16, 6, 5, 5}}, {"conv2.bias", {16}},
      {"fc1.weight", {120, 256}},      {"fc1.bias", {120}},
      {"fc2.weight", {84, 120}},       {"fc2.bias", {84}},
      {"fc3.weight", {10, 84}},        {"fc3.bias", {10}}};
  return *shapes;
}

ModelDescription LeNet5Description() {
  ModelDescriptionBuilder b;
  std::string x = b.Input(1, "x");
  x = b.Alias(b.Dense(x, "conv1.weight", "conv1.bias"), "max_pool2d");
  x = b.Alias(b.Dense(x, "conv2.weight", "conv2.bias"), "max_pool2d");
  x = b.Flatten(x, 16);
  x = b.Alias(b.Dense(x, "fc1.weight", "fc1.bias"), "relu");
  x = b.Alias(b.Dense(x, "fc2.weight", "fc2.bias"), "relu");
  b.Dense(x, "fc3.weight", "fc3.bias");
  return b.description();
}

class DescribedOfflineNowcastTest : public OfflineNowcastTest {
 protected:
  void SetUp() override {
    OfflineNowcastTest::SetUp();
    auto table = MakeParamTable(LeNet5Shapes());
    ASSERT_TRUE(table.ok());
    table_ = *table;
    torch::manual_seed(21);
    const torch::Tensor start = 0.1 * torch::randn({TotalParams(table_)});
    const torch::Tensor dir = 0.01 * torch::randn({TotalParams(table_)});
    std::vector<torch::Tensor> rows;
    for (int s = 0; s < 5; ++s) {
      rows.push_back(start + s * dir);
      io::NamedTensors sd;  // a bare state dict, with a buffer that is not a parameter
      for (const ParamSpec& p : table_) {
        sd.push_back({p.name, rows.back().narrow(0, p.offset, p.numel).reshape(p.shape).clone()});
      }
      sd.push_back({"bn.running_var", torch::ones({6})});
      o_.states.push_back((dir_ / ("lenet" + std::to_string(s) + ".pt")).string());
      ASSERT_TRUE(io::SaveTorchFile(o_.states.back(), io::StateDictValue(sd)).ok());
    }
    states_ = torch::stack(rows);
    o_.nino_model = kModel;
    o_.out = (dir_ / "nowcast.pt").string();
    o_.k = 20;
    o_.model_description = WriteText("lenet5.json", ModelDescriptionToJson(LeNet5Description()));
  }
  std::string WriteText(const std::string& name, const std::string& text) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }
  void ExpectRefused(const OfflineNowcastOptions& bad, absl::StatusCode code,
                     const std::vector<std::string>& words) {
    auto r = RunOfflineNowcast(bad);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), code) << r.status();
    for (const std::string& w : words) {
      EXPECT_NE(r.status().message().find(w), std::string::npos)
          << "'" << r.status().message() << "' does not say '" << w << "'";
    }
    EXPECT_FALSE(fs::exists(bad.out)) << bad.out;
  }
  std::vector<ParamSpec> table_;
  torch::Tensor states_;
  OfflineNowcastOptions o_;
};

TEST_F(DescribedOfflineNowcastTest, TheGraphComesFromTheDescriptionFile) {
  auto r = RunOfflineNowcast(o_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->graph.kind, GraphSpec::Kind::kDescribed);
  EXPECT_EQ(r->num_params, 44426);
  EXPECT_EQ(r->kept, std::vector<std::string>{"bn.running_var"});

  auto model = LoadDefaultModel();
  ASSERT_TRUE(model.ok());
  GraphSpec described;
  described.kind = GraphSpec::Kind::kDescribed;
  described.description = std::make_shared<const ModelDescription>(LeNet5Description());
  auto engine = NowcastEngine::Create(std::make_shared<const NiNoModel>(std::move(*model)), table_,
                                      described);
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ(r->num_edges, (*engine)->total_edges());
  auto expected = (*engine)->Nowcast(states_, 20);
  ASSERT_TRUE(expected.ok());
  auto out = io::LoadTorchFile(o_.out);
  ASSERT_TRUE(out.ok()) << out.status();
  auto sd = io::ToNamedTensors(*out);
  ASSERT_TRUE(sd.ok()) << sd.status();
  std::vector<torch::Tensor> flat;
  for (const auto& [n, t] : *sd) {
    if (n != "bn.running_var") flat.push_back(t.reshape({-1}));
  }
  EXPECT_LT((torch::cat(flat) - *expected).abs().max().item<double>(), 1e-6);
  EXPECT_GT((torch::cat(flat) - states_[4]).abs().mean().item<double>(), 1e-4);  // it moved

  // --graph described says the same; without the description the names map to no graph.
  OfflineNowcastOptions explicit_kind = o_;
  explicit_kind.graph = "described";
  explicit_kind.out = (dir_ / "nowcast2.pt").string();
  EXPECT_TRUE(RunOfflineNowcast(explicit_kind).ok());
  OfflineNowcastOptions by_names = o_;
  by_names.model_description.clear();
  by_names.out = (dir_ / "by_names.pt").string();
  auto refused = RunOfflineNowcast(by_names);
  EXPECT_FALSE(refused.ok()) << "the generic chain mapped LeNet-5 after all";
  EXPECT_FALSE(fs::exists(by_names.out));
}

TEST_F(DescribedOfflineNowcastTest, BadDescriptionsAreRefusedAndWriteNothing) {
  ModelDescription unknown = LeNet5Description();
  unknown.ops.back().weight = "head.weight";
  OfflineNowcastOptions bad = o_;
  bad.model_description = WriteText("unknown.json", ModelDescriptionToJson(unknown));
  ExpectRefused(bad, absl::StatusCode::kInvalidArgument, {"unknown.json", "head.weight"});

  ModelDescription positions = LeNet5Description();
  for (DescriptionOp& op : positions.ops) {
    if (op.kind == DescriptionOp::Kind::kFlatten) op.positions = 25;  // 400 inputs, fc1 reads 256
  }
  bad.model_description = WriteText("positions.json", ModelDescriptionToJson(positions));
  ExpectRefused(bad, absl::StatusCode::kInvalidArgument, {"positions.json", "fc1.weight"});

  bad.model_description = WriteText("broken.json", "{\"version\": 1, \"ops\": [");
  ExpectRefused(bad, absl::StatusCode::kInvalidArgument, {"broken.json"});
  bad.model_description = WriteText(
      "version.json",
      "{\"version\": 7, \"ops\": [{\"op\": \"input\", \"output\": \"x\", \"units\": 1}]}");
  ExpectRefused(bad, absl::StatusCode::kInvalidArgument, {"version.json", "version"});
  bad.model_description = (dir_ / "absent.json").string();
  ExpectRefused(bad, absl::StatusCode::kNotFound, {"absent.json"});

  OfflineNowcastOptions both = o_;
  both.graph = "gpt2";
  both.num_heads = 2;
  ExpectRefused(both, absl::StatusCode::kInvalidArgument, {"gpt2", "exclude each other"});
  OfflineNowcastOptions no_file = o_;
  no_file.model_description.clear();
  no_file.graph = "described";
  ExpectRefused(no_file, absl::StatusCode::kInvalidArgument, {"needs a model description file"});
}

}  // namespace
}  // namespace nino::tools
