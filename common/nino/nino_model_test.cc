// Loading the official NiNo checkpoints strictly, writing them back, and the forward pass's
// options (chunking, upd_scale, k range) on the FM-16 graph.
#include "common/nino/nino_model.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/io/torch_file.h"
#include "common/nino/nowcast_engine.h"

namespace nino {
namespace {

namespace fs = std::filesystem;

std::string CkptDir() {
  const char* env = std::getenv("NINO_SHARED_DIR");
  return std::string(env && *env ? env : NINO_SHARED_DIR_DEFAULT) + "/reference/checkpoints";
}

class NiNoModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(CkptDir() + "/nino_no_posw.pt")) {
      GTEST_SKIP() << "official checkpoints absent under " << CkptDir()
                   << " (set NINO_SHARED_DIR to the shared folder)";
    }
    tmp_ = fs::temp_directory_path() / ("nino_model_test_" + std::to_string(::getpid()));
    fs::create_directories(tmp_);
  }
  void TearDown() override {
    std::error_code ec;
    if (!tmp_.empty()) fs::remove_all(tmp_, ec);
  }
  // Writes a modified copy of nino_no_posw.pt and returns Load()'s status.
  absl::Status LoadModified(const std::function<void(io::NamedTensors*, io::PickleValue*)>& edit) {
    auto file = io::LoadTorchFile(CkptDir() + "/nino_no_posw.pt");
    EXPECT_TRUE(file.ok()) << file.status();
    auto sd = io::ToNamedTensors(*file->Find("state_dict"));
    EXPECT_TRUE(sd.ok());
    io::PickleValue args = *file->Find("model_args");
    edit(&*sd, &args);
    const std::string path = (tmp_ / "edited.pt").string();
    absl::Status s = io::SaveTorchFile(
        path, io::PickleValue::Dict({{io::PickleValue::String("state_dict"), io::StateDictValue(*sd)},
                                     {io::PickleValue::String("model_args"), args}}));
    EXPECT_TRUE(s.ok()) << s;
    return NiNoModel::Load(path).status();
  }
  fs::path tmp_;
};

TEST_F(NiNoModelTest, LoadsTheOfficialCheckpoints) {
  auto gnn = NiNoModel::Load(CkptDir() + "/nino_no_posw.pt");
  ASSERT_TRUE(gnn.ok()) << gnn.status();
  EXPECT_TRUE(gnn->is_gnn());
  EXPECT_FALSE(gnn->config().wte_pos_enc);
  EXPECT_EQ(gnn->num_parameters(), 549992);
  auto mlp = NiNoModel::Load(CkptDir() + "/nino_mlp.pt");
  ASSERT_TRUE(mlp.ok()) << mlp.status();
  EXPECT_FALSE(mlp->is_gnn());
  EXPECT_EQ(mlp->num_parameters(), 57384);
  auto h32 = NiNoModel::Load(CkptDir() + "/nino_mlp_h32.pt");
  ASSERT_TRUE(h32.ok()) << h32.status();
  EXPECT_EQ(h32->config().hid, 32);
  EXPECT_EQ(h32->num_parameters(), 5160);
}

TEST_F(NiNoModelTest, RejectsMismatchedCheckpointsWithTheKeyNamed) {
  auto missing = LoadModified([](io::NamedTensors* sd, io::PickleValue*) { sd->erase(sd->begin() + 3); });
  EXPECT_EQ(missing.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(missing.message().find("missing key 'edge_proj.fc.0.weight'"), std::string::npos) << missing;
  EXPECT_NE(missing.message().find("edited.pt"), std::string::npos) << missing;

  auto shape = LoadModified([](io::NamedTensors* sd, io::PickleValue*) { (*sd)[7].second = torch::zeros({361, 128}); });
  EXPECT_NE(shape.message().find("edge_out.fc.2.weight' has shape (361, 128), expected (360, 128)"),
            std::string::npos) << shape;

  auto extra = LoadModified([](io::NamedTensors* sd, io::PickleValue*) { sd->push_back({"bogus.weight", torch::zeros({2})}); });
  EXPECT_NE(extra.message().find("unexpected key 'bogus.weight'"), std::string::npos) << extra;

  auto nan = LoadModified([](io::NamedTensors* sd, io::PickleValue*) {
    (*sd)[0].second = (*sd)[0].second.clone();
    (*sd)[0].second[0][0] = std::nanf("");
  });
  EXPECT_EQ(nan.code(), absl::StatusCode::kDataLoss) << nan;

  // model_args that select another architecture make the shapes mismatch.
  auto wrong_args = LoadModified([](io::NamedTensors*, io::PickleValue* args) {
    *args = io::PickleValue::Dict({{io::PickleValue::String("gnn"), io::PickleValue::Bool(false)}});
  });
  EXPECT_FALSE(wrong_args.ok());
  auto unknown_arg = LoadModified([](io::NamedTensors*, io::PickleValue* args) {
    args->mutable_dict_items().push_back({io::PickleValue::String("warp_drive"), io::PickleValue::Int(1)});
  });
  EXPECT_NE(unknown_arg.message().find("warp_drive"), std::string::npos) << unknown_arg;
  auto unsupported = LoadModified([](io::NamedTensors*, io::PickleValue* args) {
    args->mutable_dict_items().push_back({io::PickleValue::String("final_edge_update"), io::PickleValue::Bool(true)});
  });
  EXPECT_EQ(unsupported.code(), absl::StatusCode::kUnimplemented) << unsupported;
}

TEST_F(NiNoModelTest, RejectsFilesThatAreNotCheckpoints) {
  const std::string text = (tmp_ / "notes.pt").string();
  std::ofstream(text) << "this is not a zip file";
  auto r = NiNoModel::Load(text);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("notes.pt"), std::string::npos) << r.status();
  auto missing = NiNoModel::Load((tmp_ / "absent.pt").string());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();
  // A torch.save file holding something else than a checkpoint.
  const std::string list = (tmp_ / "list.pt").string();
  ASSERT_TRUE(io::SaveTorchFile(list, io::PickleValue::List({io::PickleValue::Int(1), io::PickleValue::Int(2)})).ok());
  auto wrong = NiNoModel::Load(list);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("list.pt"), std::string::npos) << wrong.status();
}

TEST_F(NiNoModelTest, SaveRoundTripsBitForBit) {
  auto m = NiNoModel::Load(CkptDir() + "/nino_no_posw.pt");
  ASSERT_TRUE(m.ok());
  const std::string path = (tmp_ / "copy.pt").string();
  ASSERT_TRUE(m->Save(path).ok());
  auto back = NiNoModel::Load(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_FALSE(back->config().wte_pos_enc);
  ASSERT_EQ(back->state_dict().size(), m->state_dict().size());
  for (size_t i = 0; i < m->state_dict().size(); ++i) {
    EXPECT_EQ(back->state_dict()[i].first, m->state_dict()[i].first);
    EXPECT_TRUE(torch::equal(back->state_dict()[i].second, m->state_dict()[i].second));
  }
  // Python's torch.load reads it (Debian python3-torch), when available.
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0) {
    const std::string cmd =
        "/usr/bin/python3 -c \"import torch,sys; d=torch.load(sys.argv[1]); "
        "sd=d['state_dict']; assert d['model_args']=={'wte_pos_enc': False}, d['model_args']; "
        "assert len(sd)==49 and sum(v.numel() for v in sd.values())==549992; "
        "assert abs(float(sd['layer_embed.weight'].double().sum())-6.53740879)<1e-6\" " + path;
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
}

std::vector<ParamSpec> Fm16() {
  return *MakeParamTable({{"fc.0.weight", {16, 1, 3, 3}}, {"fc.0.bias", {16}}, {"fc.2.weight", {32, 16, 3, 3}},
                          {"fc.2.bias", {32}}, {"fc.4.weight", {32, 32, 3, 3}}, {"fc.4.bias", {32}},
                          {"fc.8.weight", {10, 32}}, {"fc.8.bias", {10}}});
}

TEST_F(NiNoModelTest, ChunkingUpdScaleAndHorizonRange) {
  at::set_num_threads(1);
  auto m = NiNoModel::Load(CkptDir() + "/nino_no_posw.pt");
  ASSERT_TRUE(m.ok());
  auto shared = std::make_shared<NiNoModel>(std::move(*m));
  auto engine = NowcastEngine::Create(shared, Fm16(), GraphSpec{});
  ASSERT_TRUE(engine.ok()) << engine.status();
  torch::manual_seed(0);
  torch::Tensor base = torch::randn({14378}) * 0.1;
  torch::Tensor states = torch::stack({base, base + 0.01, base + 0.02, base + 0.03, base + 0.04}) +
                         0.001 * torch::randn({5, 14378});
  auto full = (*engine)->Nowcast(states, 10);
  ASSERT_TRUE(full.ok()) << full.status();
  shared->set_chunk_size(97);  // many small edge chunks: same numbers
  auto chunked = (*engine)->Nowcast(states, 10);
  ASSERT_TRUE(chunked.ok());
  EXPECT_LT((*full - *chunked).abs().max().item<double>(), 1e-6);
  shared->set_chunk_size(1000000);
  // upd_scale scales the step in the scaled space: 0 keeps (nearly) the current parameters.
  shared->set_upd_scale(0.0);
  auto none = (*engine)->Nowcast(states, 10);
  EXPECT_LT((*none - states[4]).abs().max().item<double>(), 1e-5);
  shared->set_upd_scale(2.0);
  auto twice = (*engine)->Nowcast(states, 10);
  EXPECT_LT(((*twice - *none) - 2 * (*full - *none)).abs().max().item<double>(), 1e-5);
  shared->set_upd_scale(1.0);
  // Different horizons give different predictions; out-of-range k and bad inputs are refused.
  auto k1 = (*engine)->Nowcast(states, 1);
  EXPECT_GT((*k1 - *full).abs().max().item<double>(), 1e-4);
  EXPECT_EQ((*engine)->Nowcast(states, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*engine)->Nowcast(states, 41).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE((*engine)->Nowcast(states.narrow(0, 0, 4), 5).ok());
  torch::Tensor bad = states.clone();
  bad[2][7] = std::nanf("");
  EXPECT_EQ((*engine)->Nowcast(bad, 5).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE((*engine)->SetPositionalEncoding(torch::zeros({3, 8})).ok());
}

TEST_F(NiNoModelTest, GnnRefusesKernelsLargerThan3x3) {
  auto m = NiNoModel::Load(CkptDir() + "/nino_no_posw.pt");
  ASSERT_TRUE(m.ok());
  auto t = *MakeParamTable({{"c.0.weight", {8, 1, 5, 5}}, {"c.0.bias", {8}}, {"c.2.weight", {10, 8}}});
  auto engine = NowcastEngine::Create(std::make_shared<NiNoModel>(std::move(*m)), t, GraphSpec{});
  ASSERT_FALSE(engine.ok());
  EXPECT_NE(engine.status().message().find("nino_mlp.pt"), std::string::npos);
}

}  // namespace
}  // namespace nino
