// The offline NiNo step: the written checkpoint holds exactly the engine's prediction (in the
// inputs' dtypes, inside the inputs' container), and bad inputs change nothing.
#include "tools/offline_nowcast.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>

#include "common/io/torch_file.h"
#include "common/nino/default_model.h"
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

}  // namespace
}  // namespace nino::tools
