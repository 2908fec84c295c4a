// Loading the official NiNo checkpoints strictly, writing them back, and the forward pass's
// options (chunking, upd_scale, k range) on the FM-16 graph.
#include "common/nino/nino_model.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/io/torch_file.h"
#include "common/nino/nowcast_engine.h"
#include "tests/testing/synthetic_checkpoint.h"
#include "tests/testing/test_util.h"

namespace nino {
namespace {

namespace fs = std::filesystem;

// The official checkpoints: the tests about their exact files (names, key order, model_args,
// checksums) read them and skip without ../shared (SKIP_WITHOUT_OFFICIAL).
std::string CkptDir() { return nino::testing::SharedDir() + "/reference/checkpoints"; }
bool OfficialAbsent() { return !fs::exists(CkptDir() + "/nino_no_posw.pt"); }
#define SKIP_WITHOUT_OFFICIAL()                                     \
  if (OfficialAbsent())                                             \
  GTEST_SKIP() << "official checkpoints absent under " << CkptDir() \
               << " (set NINO_SHARED_DIR to the shared folder)"

// A synthetic checkpoint in nino_no_posw.pt's layout: the other tests are about loading, saving
// and running a GNN checkpoint, not about the official weights, and never skip.
std::string GnnPath() {
  return nino::testing::SharedSyntheticCheckpoint(nino::testing::SyntheticNiNo::kGnn);
}

class NiNoModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(GnnPath().empty());
    tmp_ = nino::testing::MakeTestDir("nino_model_test");
    ASSERT_FALSE(tmp_.empty());
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
        path,
        io::PickleValue::Dict({{io::PickleValue::String("state_dict"), io::StateDictValue(*sd)},
                               {io::PickleValue::String("model_args"), args}}));
    EXPECT_TRUE(s.ok()) << s;
    return NiNoModel::Load(path).status();
  }
  fs::path tmp_;
};

TEST_F(NiNoModelTest, LoadsTheOfficialCheckpoints) {
  SKIP_WITHOUT_OFFICIAL();
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
  SKIP_WITHOUT_OFFICIAL();
  auto missing =
      LoadModified([](io::NamedTensors* sd, io::PickleValue*) { sd->erase(sd->begin() + 3); });
  EXPECT_EQ(missing.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(missing.message().find("missing key 'edge_proj.fc.0.weight'"), std::string::npos)
      << missing;
  EXPECT_NE(missing.message().find("edited.pt"), std::string::npos) << missing;

  auto shape = LoadModified([](io::NamedTensors* sd, io::PickleValue*) {
    (*sd)[7].second = torch::zeros({361, 128});
  });
  EXPECT_NE(shape.message().find("edge_out.fc.2.weight' has shape (361, 128), expected (360, 128)"),
            std::string::npos)
      << shape;

  auto extra = LoadModified([](io::NamedTensors* sd, io::PickleValue*) {
    sd->push_back({"bogus.weight", torch::zeros({2})});
  });
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
    args->mutable_dict_items().push_back(
        {io::PickleValue::String("warp_drive"), io::PickleValue::Int(1)});
  });
  EXPECT_NE(unknown_arg.message().find("warp_drive"), std::string::npos) << unknown_arg;
  auto unsupported = LoadModified([](io::NamedTensors*, io::PickleValue* args) {
    args->mutable_dict_items().push_back(
        {io::PickleValue::String("final_edge_update"), io::PickleValue::Bool(true)});
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
  ASSERT_TRUE(io::SaveTorchFile(
                  list, io::PickleValue::List({io::PickleValue::Int(1), io::PickleValue::Int(2)}))
                  .ok());
  auto wrong = NiNoModel::Load(list);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("list.pt"), std::string::npos) << wrong.status();
}

TEST_F(NiNoModelTest, SaveRoundTripsBitForBit) {
  SKIP_WITHOUT_OFFICIAL();
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
        "assert abs(float(sd['layer_embed.weight'].double().sum())-6.53740879)<1e-6\" " +
        path;
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
}

std::vector<ParamSpec> Fm16() {
  return *MakeParamTable({{"fc.0.weight", {16, 1, 3, 3}},
                          {"fc.0.bias", {16}},
                          {"fc.2.weight", {32, 16, 3, 3}},
                          {"fc.2.bias", {32}},
                          {"fc.4.weight", {32, 32, 3, 3}},
                          {"fc.4.bias", {32}},
                          {"fc.8.weight", {10, 32}},
                          {"fc.8.bias", {10}}});
}

TEST_F(NiNoModelTest, ChunkingUpdScaleAndHorizonRange) {
  at::set_num_threads(1);
  auto m = NiNoModel::Load(GnnPath());
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

// FM-16 context states: a drifting trajectory.
torch::Tensor Fm16States() {
  torch::manual_seed(0);
  torch::Tensor base = torch::randn({14378}) * 0.1;
  return torch::stack({base, base + 0.01, base + 0.02, base + 0.03, base + 0.04}) +
         0.001 * torch::randn({5, 14378});
}

double MaxDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

TEST_F(NiNoModelTest, EdgeSamplingAveragesMessagesOverSampledInEdges) {
  at::set_num_threads(1);
  auto m = NiNoModel::Load(GnnPath());
  ASSERT_TRUE(m.ok());
  auto model = std::make_shared<const NiNoModel>(std::move(*m));
  const torch::Tensor states = Fm16States();
  auto make = [&](double ratio, uint64_t seed) {
    NowcastEngineOptions o;
    o.forward.edge_sample_ratio = ratio;
    o.forward.edge_sample_seed = seed;
    auto e = NowcastEngine::Create(model, Fm16(), GraphSpec{}, o);
    EXPECT_TRUE(e.ok()) << e.status();
    return std::move(*e);
  };
  auto full = make(0, 0)->Nowcast(states, 10);
  ASSERT_TRUE(full.ok());
  // Ratio 1 samples every edge: the exact computation.
  auto all = make(1.0, 0)->Nowcast(states, 10);
  ASSERT_TRUE(all.ok());
  EXPECT_LT(MaxDiff(*all, *full), 1e-7);
  // A sample: reproducible with its seed, different across seeds and from the full graph.
  auto engine = make(0.3, 7);
  NowcastDetails details;
  details.trace.max_edge_rows = 1 << 20;
  auto a = engine->Nowcast(states, 10, &details);
  auto b = make(0.3, 7)->Nowcast(states, 10);
  auto c = make(0.3, 8)->Nowcast(states, 10);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(MaxDiff(*a, *b), 0.0);
  EXPECT_GT(MaxDiff(*a, *c), 1e-7);
  EXPECT_GT(MaxDiff(*a, *full), 1e-7);
  EXPECT_LT(MaxDiff(*a, *full), 10 * MaxDiff(*full, states[4])) << "a sample, not noise";

  // The semantics of one layer, from the trace and the checkpoint's weights, written the
  // official way (concatenated [target, source] inputs, mean over the sampled in-edges).
  const NeuralGraph& g = engine->graph();
  const int64_t E = g.num_edges(), N = g.num_nodes;
  ASSERT_EQ(details.trace.sampled_edges.size(), 2u);  // the two active conv layers
  const torch::Tensor ids = details.trace.sampled_edges[0];
  EXPECT_EQ(ids.numel(), static_cast<int64_t>(E * 0.3));
  EXPECT_EQ(std::get<0>(torch::_unique(ids)).numel(), ids.numel());
  EXPECT_GE(ids.min().item<int64_t>(), 0);
  EXPECT_LT(ids.max().item<int64_t>(), E);
  const auto& sd = model->state_dict();
  auto w = [&](const std::string& k) {
    for (const auto& [name, t] : sd) {
      if (name == k) return t;
    }
    ADD_FAILURE() << "no weight " << k;
    return torch::Tensor();
  };
  namespace F = torch::nn::functional;
  const torch::Tensor ei = g.EdgeIndexTensor();
  const torch::Tensor src = ei[0].index_select(0, ids), dst = ei[1].index_select(0, ids);
  const torch::Tensor h0 = details.trace.h0, e0 = details.trace.e0.index_select(0, ids);
  ASSERT_EQ(details.trace.e0.size(0), E);
  const torch::Tensor ab =
      F::linear(e0, w("gnn.convs.0.edge_encoder.weight"), w("gnn.convs.0.edge_encoder.bias"));
  const torch::Tensor pre =
      F::linear(torch::cat({h0.index_select(0, dst), h0.index_select(0, src)}, 1),
                w("gnn.convs.0.pre_nns.0.0.weight"), w("gnn.convs.0.pre_nns.0.0.bias"));
  const int64_t h = h0.size(1);
  const torch::Tensor msg = ab.narrow(1, 0, h) * pre + ab.narrow(1, h, h);
  torch::Tensor agg = torch::zeros({N, h}).index_add_(0, dst, msg);
  agg = agg / torch::bincount(dst, {}, N).clamp_min(1).unsqueeze(1).to(torch::kFloat32);
  const torch::Tensor u = F::linear(torch::cat({h0, agg}, 1), w("gnn.convs.0.post_nns.0.0.weight"),
                                    w("gnn.convs.0.post_nns.0.0.bias"));
  const torch::Tensor z = F::linear(u, w("gnn.convs.0.lin.weight"), w("gnn.convs.0.lin.bias"));
  EXPECT_LT(MaxDiff(z, details.trace.conv0_out), 1e-5);
  // Bad ratios are refused before anything is built.
  NowcastEngineOptions bad;
  bad.forward.edge_sample_ratio = -0.5;
  EXPECT_EQ(NowcastEngine::Create(model, Fm16(), GraphSpec{}, bad).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(NiNoModelTest, Bf16EdgeStateAndChunkBudget) {
  at::set_num_threads(1);
  auto m = NiNoModel::Load(GnnPath());
  ASSERT_TRUE(m.ok());
  auto model = std::make_shared<const NiNoModel>(std::move(*m));
  const torch::Tensor states = Fm16States();
  auto run = [&](const ForwardOptions& f) {
    NowcastEngineOptions o;
    o.forward = f;
    auto e = NowcastEngine::Create(model, Fm16(), GraphSpec{}, o);
    EXPECT_TRUE(e.ok()) << e.status();
    auto y = (*e)->Nowcast(states, 10);
    EXPECT_TRUE(y.ok()) << y.status();
    return *y;
  };
  const torch::Tensor exact = run({});
  ForwardOptions small_chunks;
  small_chunks.chunk_rows = 97;
  EXPECT_LT(MaxDiff(run(small_chunks), exact), 1e-6);
  ForwardOptions bf16;
  bf16.edge_state_dtype = torch::kBFloat16;
  const torch::Tensor rounded = run(bf16);
  const double step = MaxDiff(exact, states[4]);
  const double err = MaxDiff(rounded, exact);
  EXPECT_GT(err, 0.0) << "the edge state was not rounded";
  EXPECT_LT(err, 0.05 * step) << "bf16 edge state moved the prediction by " << err
                              << " against a step of " << step;
  // A memory budget in bytes becomes chunk rows: 16 MiB of temporaries at hid 128.
  EXPECT_EQ(ChunkRowsForBudget(16 << 20, 128, true), (16 << 20) / (6 * 128 * 4));
  EXPECT_EQ(ChunkRowsForBudget(1, 128, true), 1024);
}

// A GPT-2 layout: wte, wpe, L blocks, ln_f (NINO_SPEC.md 3.5).
std::vector<ParamSpec> Gpt2Table(int L, int64_t d, int64_t V, int64_t Ppos, int64_t Fb) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> s;
  s.push_back({"transformer.wte.weight", {V, d}});
  s.push_back({"transformer.wpe.weight", {Ppos, d}});
  for (int b = 0; b < L; ++b) {
    const std::string h = "transformer.h." + std::to_string(b) + ".";
    for (const char* n : {"ln_1.weight", "ln_1.bias"}) s.push_back({h + n, {d}});
    s.push_back({h + "attn.c_attn.weight", {d, 3 * d}});
    s.push_back({h + "attn.c_attn.bias", {3 * d}});
    s.push_back({h + "attn.c_proj.weight", {d, d}});
    s.push_back({h + "attn.c_proj.bias", {d}});
    for (const char* n : {"ln_2.weight", "ln_2.bias"}) s.push_back({h + n, {d}});
    s.push_back({h + "mlp.c_fc.weight", {d, Fb}});
    s.push_back({h + "mlp.c_fc.bias", {Fb}});
    s.push_back({h + "mlp.c_proj.weight", {Fb, d}});
    s.push_back({h + "mlp.c_proj.bias", {d}});
  }
  s.push_back({"transformer.ln_f.weight", {d}});
  s.push_back({"transformer.ln_f.bias", {d}});
  return *MakeParamTable(s);
}

TEST_F(NiNoModelTest, SubgraphModeRunsOneGraphPerBlock) {
  at::set_num_threads(2);
  auto m = NiNoModel::Load(GnnPath());
  ASSERT_TRUE(m.ok());
  auto model = std::make_shared<const NiNoModel>(std::move(*m));
  const int L = 3;
  const int64_t d = 16, V = 50, Ppos = 8, Fb = 32;
  const std::vector<ParamSpec> table = Gpt2Table(L, d, V, Ppos, Fb);
  const int64_t P = TotalParams(table);
  GraphSpec spec;
  spec.kind = GraphSpec::Kind::kGpt2;
  spec.num_heads = 2;

  // The split: [wte, wpe, block 0], [block 1], [block 2, ln_f], each renamed to block 0.
  auto groups = SplitIntoBlocks(table, spec);
  ASSERT_TRUE(groups.ok()) << groups.status();
  ASSERT_EQ(groups->size(), 3u);
  EXPECT_EQ((*groups)[0].params.front().name, "transformer.wte.weight");
  EXPECT_EQ((*groups)[1].params.front().name, "transformer.h.0.ln_1.weight");
  EXPECT_EQ((*groups)[2].params.back().name, "transformer.ln_f.bias");
  int64_t rows = 0;
  for (const ParamGroup& g : *groups) {
    EXPECT_EQ(g.row_begin, rows);
    rows += g.rows;
  }
  EXPECT_EQ(rows, P);
  // Each part follows the closed form (3.5) of a one-block graph: V d + P_pos d (first part
  // only) + 4 d^2 + 2 d F_b + F_b + 13 d + 2 d (ln_f, last part only) + N self-loops.
  NowcastEngineOptions o;
  o.subgraph = true;
  auto engine = NowcastEngine::Create(model, table, spec, o);
  ASSERT_TRUE(engine.ok()) << engine.status();
  ASSERT_EQ((*engine)->num_parts(), 3);
  for (int i = 0; i < 3; ++i) {
    const NeuralGraph& g = (*engine)->part_graph(i);
    const int64_t expected = (i == 0 ? V * d + Ppos * d : 0) + 4 * d * d + 2 * d * Fb + Fb +
                             13 * d + (i == 2 ? 2 * d : 0) + g.num_nodes;
    EXPECT_EQ(g.num_edges(), expected) << "part " << i;
  }
  auto whole = NowcastEngine::Create(model, table, spec);
  ASSERT_TRUE(whole.ok());
  EXPECT_LT((*engine)->total_edges(), (*whole)->total_edges() + 3 * 64);

  // A part's prediction is the standalone nowcast of its group (scaling is per tensor, and a
  // tensor never straddles two groups): rows [begin, begin + rows) of the subgraph nowcast.
  torch::manual_seed(3);
  torch::Tensor base = 0.05 * torch::randn({P});
  torch::Tensor drift = torch::randn({P});
  std::vector<torch::Tensor> traj{base};
  for (int t = 1; t < 5; ++t)
    traj.push_back(traj.back() + 0.002 * (drift + 0.3 * torch::randn({P})));
  const torch::Tensor states = torch::stack(traj);
  auto split = (*engine)->Nowcast(states, 20);
  ASSERT_TRUE(split.ok()) << split.status();
  for (const ParamGroup& g : *groups) {
    auto part_engine = NowcastEngine::Create(model, g.params, spec);
    ASSERT_TRUE(part_engine.ok()) << part_engine.status();
    auto part = (*part_engine)->Nowcast(states.narrow(1, g.row_begin, g.rows), 20);
    ASSERT_TRUE(part.ok()) << part.status();
    EXPECT_LT(MaxDiff(split->narrow(0, g.row_begin, g.rows), *part), 1e-6) << g.row_begin;
  }
  auto full = (*whole)->Nowcast(states, 20);
  ASSERT_TRUE(full.ok());
  EXPECT_GT(MaxDiff(*split, *full), 1e-7) << "message passing across blocks must be cut";

  // Layouts without GPT-2 blocks are refused with the reason.
  auto mlp = NowcastEngine::Create(model, Fm16(), GraphSpec{}, o);
  ASSERT_FALSE(mlp.ok());
  EXPECT_NE(mlp.status().message().find("subgraph mode"), std::string::npos) << mlp.status();
}

TEST_F(NiNoModelTest, GnnRefusesKernelsLargerThan3x3) {
  auto m = NiNoModel::Load(GnnPath());
  ASSERT_TRUE(m.ok());
  auto t =
      *MakeParamTable({{"c.0.weight", {8, 1, 5, 5}}, {"c.0.bias", {8}}, {"c.2.weight", {10, 8}}});
  auto engine = NowcastEngine::Create(std::make_shared<NiNoModel>(std::move(*m)), t, GraphSpec{});
  ASSERT_FALSE(engine.ok());
  EXPECT_NE(engine.status().message().find("nino_mlp.pt"), std::string::npos);
}

// Synthetic models need no files from ../shared: these tests never skip.
NiNoConfig NoPoswConfig() {
  NiNoConfig c;
  c.wte_pos_enc = false;  // the layout of nino_no_posw.pt
  return c;
}

TEST(SyntheticNiNoModelTest, SaveLoadRoundTripIsExactForBothVariants) {
  const fs::path dir = nino::testing::MakeTestDir("nino_synth_test");
  ASSERT_FALSE(dir.empty());
  NiNoConfig mlp_config;
  mlp_config.gnn = false;
  for (const NiNoConfig& config : {NoPoswConfig(), mlp_config}) {
    auto m = NiNoModel::Synthetic(config, 7);
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->is_gnn(), config.gnn);
    const std::string path = (dir / (config.gnn ? "gnn.pt" : "mlp.pt")).string();
    ASSERT_TRUE(m->Save(path).ok());
    auto back = NiNoModel::Load(path);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->config().gnn, config.gnn);
    EXPECT_EQ(back->config().wte_pos_enc, config.wte_pos_enc);
    EXPECT_EQ(back->config().hid, config.hid);
    EXPECT_EQ(back->num_parameters(), m->num_parameters());
    ASSERT_EQ(back->state_dict().size(), m->state_dict().size());
    for (size_t i = 0; i < m->state_dict().size(); ++i) {
      const auto& [key, t] = m->state_dict()[i];
      EXPECT_EQ(back->state_dict()[i].first, key);
      EXPECT_TRUE(torch::equal(back->state_dict()[i].second, t)) << key;
      EXPECT_TRUE(torch::isfinite(t).all().item<bool>()) << key;
    }
    // The official layout: same parameter counts as the official files of that layout.
    EXPECT_EQ(m->num_parameters(), config.gnn ? 549992 : 57384);
    // Same seed, same weights; another seed, other weights.
    auto again = NiNoModel::Synthetic(config, 7);
    auto other = NiNoModel::Synthetic(config, 8);
    ASSERT_TRUE(again.ok() && other.ok());
    EXPECT_TRUE(torch::equal(again->state_dict()[0].second, m->state_dict()[0].second));
    EXPECT_FALSE(torch::equal(other->state_dict()[0].second, m->state_dict()[0].second));
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

TEST(SyntheticNiNoModelTest, PredictionIsFiniteAndCloseToTheLastState) {
  at::set_num_threads(1);
  for (bool gnn : {true, false}) {
    NiNoConfig config = NoPoswConfig();
    config.gnn = gnn;
    auto m = NiNoModel::Synthetic(config, 1);
    ASSERT_TRUE(m.ok()) << m.status();
    auto table = MakeParamTable(
        {{"fc.0.weight", {8, 4}}, {"fc.0.bias", {8}}, {"fc.1.weight", {3, 8}}, {"fc.1.bias", {3}}});
    ASSERT_TRUE(table.ok());
    auto engine =
        NowcastEngine::Create(std::make_shared<NiNoModel>(std::move(*m)), *table, GraphSpec{});
    ASSERT_TRUE(engine.ok()) << engine.status();
    torch::manual_seed(0);
    const torch::Tensor base = torch::randn({67}) * 0.1;
    const torch::Tensor states =
        torch::stack({base, base + 0.01, base + 0.02, base + 0.03, base + 0.04}) +
        0.001 * torch::randn({5, 67});
    for (int k : {1, 40}) {
      auto pred = (*engine)->Nowcast(states, k);
      ASSERT_TRUE(pred.ok()) << pred.status();
      EXPECT_TRUE(torch::isfinite(*pred).all().item<bool>());
      // The head's small output layer keeps the step small, but not zero.
      const double step = (*pred - states[4]).abs().max().item<double>();
      EXPECT_LT(step, 0.05) << "gnn " << gnn << " k " << k;
      EXPECT_GT(step, 0.0) << "gnn " << gnn << " k " << k;
    }
  }
}

// The bfloat16 product option (--bf16_matmul) on both variants, with and without the bfloat16
// edge state: it changes the prediction (the products really ran in bfloat16) by a small
// fraction of the step, and the engine refuses other product types.
TEST(SyntheticNiNoModelTest, Bf16ProductsApproximateTheExactStep) {
  at::set_num_threads(1);
  auto table = MakeParamTable({{"fc.0.weight", {32, 16}},
                               {"fc.0.bias", {32}},
                               {"fc.1.weight", {10, 32}},
                               {"fc.1.bias", {10}}});
  ASSERT_TRUE(table.ok());
  torch::manual_seed(3);
  const int64_t n = 16 * 32 + 32 + 10 * 32 + 10;
  const torch::Tensor base = torch::randn({n}) * 0.1;
  const torch::Tensor drift = torch::randn({n}) * 0.01;
  const torch::Tensor states =
      torch::stack({base, base + drift, base + 2 * drift, base + 3 * drift, base + 4 * drift}) +
      0.001 * torch::randn({5, n});
  for (bool gnn : {true, false}) {
    NiNoConfig config = NoPoswConfig();
    config.gnn = gnn;
    auto m = NiNoModel::Synthetic(config, 5);
    ASSERT_TRUE(m.ok()) << m.status();
    auto model = std::make_shared<const NiNoModel>(std::move(*m));
    auto run = [&](torch::ScalarType product, torch::ScalarType state) {
      NowcastEngineOptions o;
      o.forward.matmul_dtype = product;
      o.forward.edge_state_dtype = state;
      auto e = NowcastEngine::Create(model, *table, GraphSpec{}, o);
      EXPECT_TRUE(e.ok()) << e.status();
      auto y = (*e)->Nowcast(states, 40);
      EXPECT_TRUE(y.ok()) << y.status();
      return *y;
    };
    const torch::Tensor exact = run(torch::kFloat32, torch::kFloat32);
    const double step = MaxDiff(exact, states[4]);
    ASSERT_GT(step, 0.0);
    for (torch::ScalarType state : {torch::kFloat32, torch::kBFloat16}) {
      if (!gnn && state == torch::kBFloat16) continue;  // WNN+ keeps no edge state
      const torch::Tensor low = run(torch::kBFloat16, state);
      const double err = MaxDiff(low, exact);
      EXPECT_TRUE(torch::isfinite(low).all().item<bool>());
      EXPECT_GT(err, 0.0) << "gnn " << gnn << ": the products did not run in bfloat16";
      EXPECT_LT(err, 0.05 * step) << "gnn " << gnn << ": bf16 products moved the prediction by "
                                  << err << " against a step of " << step;
    }
    NowcastEngineOptions bad;
    bad.forward.matmul_dtype = torch::kFloat16;
    EXPECT_EQ(NowcastEngine::Create(model, *table, GraphSpec{}, bad).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST(SyntheticNiNoModelTest, RefusesConfigsLoadWouldRefuse) {
  NiNoConfig bad = NoPoswConfig();
  bad.ctx = 4;
  EXPECT_EQ(NiNoModel::Synthetic(bad, 0).status().code(), absl::StatusCode::kInvalidArgument);
  bad = NoPoswConfig();
  bad.hid = 0;
  EXPECT_EQ(NiNoModel::Synthetic(bad, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace nino
