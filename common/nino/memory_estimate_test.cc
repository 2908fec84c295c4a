// CountGraph against the real graph builders (exact), and the memory estimate against a real
// NowcastEngine: kept bytes exact, a nowcast's working memory an upper bound within 35% of the
// tensor bytes LibTorch's CPU allocator actually holds at the peak.
#include "common/nino/memory_estimate.h"

#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/nino/graph_size.h"
#include "common/nino/model_description.h"
#include "common/nino/neural_graph.h"
#include "common/nino/nino_model.h"
#include "common/nino/nowcast_engine.h"
#include "common/nino/test_layouts.h"

namespace nino {
namespace {

using Shapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;

std::vector<ParamSpec> Table(const Shapes& s) { return *MakeParamTable(s); }

Shapes Mlp(int64_t in, int64_t hid, int64_t out) {
  return {{"fc.0.weight", {hid, in}}, {"fc.0.bias", {hid}},        {"fc.2.weight", {hid, hid}},
          {"fc.2.bias", {hid}},       {"fc.4.weight", {out, hid}}, {"fc.4.bias", {out}}};
}

Shapes Fm16() { return testing::Fm16Layout(); }

// An MLP with a norm gain and bias between layers (auxiliary nodes shift the targets).
Shapes MlpWithNorm() {
  return {{"fc.0.weight", {24, 30}}, {"fc.0.bias", {24}},      {"ln.weight", {24}},
          {"ln.bias", {24}},         {"fc.2.weight", {7, 24}}, {"fc.2.bias", {7}}};
}

Shapes Gpt2(int L, int64_t d, int64_t V, int64_t Ppos, int64_t Fb, bool lnf = true) {
  return testing::Gpt2Layout(L, d, V, Ppos, Fb, lnf);
}

Shapes Llama(int64_t V, int64_t d, int64_t L, int64_t H, int64_t KV, int64_t ff, bool tied) {
  LlamaShape s;
  s.vocab = V;
  s.dim = d;
  s.layers = L;
  s.heads = H;
  s.kv_heads = KV;
  s.ffn = ff;
  s.tie_embeddings = tied;
  return LlamaNamedShapes(s);
}

// A residual CNN (stem conv + BN, a block whose 1x1 projection shortcut joins by an add), then a
// flatten of 2x2 positions into a linear layer: flatten ties and residual edges in the graph.
Shapes ResidualCnn(int64_t width) {
  return {{"conv0.weight", {width, 3, 3, 3}},
          {"bn0.weight", {width}},
          {"bn0.bias", {width}},
          {"conv1.weight", {2 * width, width, 3, 3}},
          {"bn1.weight", {2 * width}},
          {"bn1.bias", {2 * width}},
          {"down.weight", {2 * width, width, 1, 1}},
          {"fc.weight", {10, 8 * width}},
          {"fc.bias", {10}}};
}

GraphSpec ResidualCnnSpec() {
  ModelDescriptionBuilder b;
  std::string x = b.Norm(b.Dense(b.Input(3), "conv0.weight"), "bn0.weight", "bn0.bias");
  const std::string h = b.Norm(b.Dense(x, "conv1.weight"), "bn1.weight", "bn1.bias");
  x = b.Add(h, b.Dense(x, "down.weight"));
  b.Dense(b.Flatten(b.Alias(x, "max_pool2d"), 4), "fc.weight", "fc.bias");
  GraphSpec spec;
  spec.kind = GraphSpec::Kind::kDescribed;
  spec.description = std::make_shared<const ModelDescription>(b.description());
  return spec;
}

GraphSpec Kind(GraphSpec::Kind kind, int64_t heads = 0, int64_t kv_heads = 0) {
  GraphSpec g;
  g.kind = kind;
  g.num_heads = heads;
  g.num_kv_heads = kv_heads;
  return g;
}

void ExpectCountMatchesBuild(const Shapes& shapes, const GraphSpec& spec, const char* what) {
  const std::vector<ParamSpec> params = Table(shapes);
  absl::StatusOr<NeuralGraph> built = BuildGraph(params, spec);
  ASSERT_TRUE(built.ok()) << what << ": " << built.status();
  absl::StatusOr<GraphSize> counted = CountGraph(params, spec);
  ASSERT_TRUE(counted.ok()) << what << ": " << counted.status();
  EXPECT_EQ(counted->nodes, built->num_nodes) << what;
  EXPECT_EQ(counted->edges, built->num_edges()) << what;
  EXPECT_EQ(counted->feat_size, built->feat_size) << what;
  EXPECT_EQ(counted->params, built->num_params) << what;
}

TEST(GraphSize, CountsEqualTheBuiltGraphs) {
  using K = GraphSpec::Kind;
  ExpectCountMatchesBuild(Mlp(784, 64, 10), Kind(K::kGeneric), "mlp");
  ExpectCountMatchesBuild(Fm16(), Kind(K::kGeneric), "fm16");
  ExpectCountMatchesBuild(MlpWithNorm(), Kind(K::kGeneric), "mlp with a norm");
  ExpectCountMatchesBuild({{"w", {300, 200}}}, Kind(K::kGeneric), "one bias-free layer");
  ExpectCountMatchesBuild(Gpt2(2, 16, 50, 12, 64), Kind(K::kGpt2, 4), "gpt2");
  ExpectCountMatchesBuild(Gpt2(3, 8, 0, 0, 20, false), Kind(K::kGpt2, 2), "gpt2 bare blocks");
  ExpectCountMatchesBuild(Gpt2(1, 8, 30, 0, 32), Kind(K::kGpt2, 1), "gpt2 without wpe");
  ExpectCountMatchesBuild(Gpt2(2, 16, 50, 12, 64), Kind(K::kAuto, 4), "gpt2 auto");
  ExpectCountMatchesBuild(Llama(40, 16, 2, 4, 2, 44, false), Kind(K::kLlama, 4, 2), "llama gqa");
  ExpectCountMatchesBuild(Llama(40, 16, 3, 4, 0, 40, true), Kind(K::kLlama, 4, 0), "llama tied");
  ExpectCountMatchesBuild(Llama(40, 16, 1, 2, 1, 24, false), Kind(K::kAuto, 2, 1), "llama auto");
  ExpectCountMatchesBuild(ResidualCnn(4), ResidualCnnSpec(), "described residual cnn");
}

TEST(GraphSize, DescribedLayoutsItCannotCountAreRefused) {
  EXPECT_EQ(CountGraph(Table(Fm16()), Kind(GraphSpec::Kind::kDescribed)).status().code(),
            absl::StatusCode::kInvalidArgument);
  // The description names parameters this layout does not have.
  EXPECT_EQ(CountGraph(Table(Fm16()), ResidualCnnSpec()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(GraphSize, SubgraphPartsEqualTheBuiltBlocks) {
  const std::vector<ParamSpec> params = Table(Gpt2(3, 16, 50, 12, 64));
  const GraphSpec spec = Kind(GraphSpec::Kind::kGpt2, 4);
  absl::StatusOr<std::vector<GraphSize>> parts = CountEngineGraphs(params, spec, true);
  ASSERT_TRUE(parts.ok()) << parts.status();
  absl::StatusOr<std::vector<ParamGroup>> groups = SplitIntoBlocks(params, spec);
  ASSERT_TRUE(groups.ok());
  ASSERT_EQ(parts->size(), groups->size());
  for (size_t i = 0; i < groups->size(); ++i) {
    absl::StatusOr<NeuralGraph> g = BuildGraph((*groups)[i].params, spec);
    ASSERT_TRUE(g.ok());
    EXPECT_EQ((*parts)[i].nodes, g->num_nodes) << i;
    EXPECT_EQ((*parts)[i].edges, g->num_edges()) << i;
  }
}

TEST(GraphSize, UncountableLayoutsAreRefused) {
  const std::vector<ParamSpec> params = Table(Fm16());
  EXPECT_EQ(CountGraph(params, Kind(GraphSpec::Kind::kGpt2, 4)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CountGraph(params, Kind(GraphSpec::Kind::kLlama, 4)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CountEngineGraphs(params, Kind(GraphSpec::Kind::kGeneric), true).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(GraphSize, GrownCapacityFollowsDoubling) {
  for (int64_t n : {0, 1, 2, 3, 5, 1000, 4096, 4097}) {
    std::vector<int64_t> v;
    for (int64_t i = 0; i < n; ++i) v.push_back(i);
    EXPECT_EQ(GrownCapacity(n), static_cast<int64_t>(v.capacity())) << n;
  }
}

// LibTorch's CPU allocator, counting the bytes of live tensors and their peak.
class CountingAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) const override {
    void* p = c10::alloc_cpu(n);
    const int64_t now = live_.fetch_add(static_cast<int64_t>(n)) + static_cast<int64_t>(n);
    int64_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    auto* block = new Block{p, n, this};
    return {p, block, &Free, c10::Device(c10::DeviceType::CPU)};
  }
  int64_t live() const { return live_.load(); }
  int64_t peak() const { return peak_.load(); }
  void ResetPeak() { peak_.store(live_.load()); }

 private:
  struct Block {
    void* p;
    size_t n;
    const CountingAllocator* owner;
  };
  static void Free(void* ctx) {
    auto* b = static_cast<Block*>(ctx);
    b->owner->live_.fetch_sub(static_cast<int64_t>(b->n));
    c10::free_cpu(b->p);
    delete b;
  }
  mutable std::atomic<int64_t> live_{0};
  mutable std::atomic<int64_t> peak_{0};
};

CountingAllocator* Counter() {
  static CountingAllocator* counter = [] {
    auto* c = new CountingAllocator();
    c10::SetCPUAllocator(c, /*priority=*/1);
    return c;
  }();
  return counter;
}

class EngineMemoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Counter();
    // Memory depends on the layout, not on the weights: a synthetic GNN in nino_no_posw.pt's
    // layout (NiNoModel::Synthetic) stands in for it, so the test needs nothing but the repo.
    NiNoConfig config;
    config.wte_pos_enc = false;
    auto loaded = NiNoModel::Synthetic(config, /*seed=*/0);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    model_ = std::make_shared<const NiNoModel>(std::move(*loaded));
  }

  // Builds the engine, checks the kept bytes exactly and one nowcast's tensor peak against the
  // estimate.
  void Check(const Shapes& shapes, const GraphSpec& spec, const NowcastTuning& tuning,
             const char* what) {
    SCOPED_TRACE(what);
    const std::vector<ParamSpec> params = Table(shapes);
    NowcastEngineOptions options;
    ASSERT_TRUE(ApplyTuning(tuning, model_->config(), &options).ok());
    absl::StatusOr<NowcastMemoryEstimate> est =
        EstimateNowcastMemory(params, spec, model_->config(), options);
    ASSERT_TRUE(est.ok()) << est.status();
    auto engine = NowcastEngine::Create(model_, params, spec, options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    const NowcastEngine& e = **engine;
    ASSERT_EQ(static_cast<int>(est->parts.size()), e.num_parts());
    EXPECT_EQ(est->total_nodes(), e.total_nodes());
    EXPECT_EQ(est->total_edges(), e.total_edges());

    // Kept bytes: the graphs' vectors as they are, and the index tensors by their definition.
    int64_t kept = 0;
    for (int i = 0; i < e.num_parts(); ++i) {
      const NeuralGraph& g = e.part_graph(i);
      kept += 8 * static_cast<int64_t>(g.src.capacity() + g.dst.capacity() + g.type.capacity() +
                                       g.param_index.capacity() + g.pos_w.capacity());
      kept += g.EdgeIndexTensor().nbytes() + g.EdgeTypeTensor().nbytes() + g.PosWTensor().nbytes() +
              g.ParamIndexTensor().nbytes();
      const int64_t slots = std::count_if(g.param_index.begin(), g.param_index.end(),
                                          [](int64_t r) { return r >= 0; });
      kept += 2 * 8 * slots;
    }
    // The positional encodings ([N, lpe] float32 per part; the first one is visible).
    const int64_t lpe = model_->config().lpe;
    EXPECT_EQ(static_cast<int64_t>(e.positional_encoding().nbytes()),
              4 * e.part_graph(0).num_nodes * lpe);
    for (int i = 0; i < e.num_parts(); ++i) kept += 4 * e.part_graph(i).num_nodes * lpe;
    EXPECT_EQ(est->graph_bytes, kept);

    // One nowcast, the caller's stacked context included.
    const int64_t P = TotalParams(params);
    torch::manual_seed(1);
    const torch::Tensor base = torch::randn({P}) * 0.1;
    const torch::Tensor drift = torch::randn({P}) * 0.01;
    Counter()->ResetPeak();
    const int64_t before = Counter()->live();
    {
      std::vector<torch::Tensor> snaps;
      for (int s = 0; s < 5; ++s) snaps.push_back(base + drift * s);
      torch::Tensor states = torch::stack(snaps);
      snaps.clear();
      absl::StatusOr<torch::Tensor> out = e.Nowcast(states, 10);
      ASSERT_TRUE(out.ok()) << out.status();
    }
    const int64_t measured = Counter()->peak() - before;
    const double ratio = static_cast<double>(est->nowcast_bytes) / static_cast<double>(measured);
    std::printf("%s: nowcast estimate %lld measured %lld ratio %.3f\n", what,
                static_cast<long long>(est->nowcast_bytes), static_cast<long long>(measured),
                ratio);
    EXPECT_GE(ratio, 1.0) << "the estimate must bound the measured peak";
    // 1.04-1.09 measured with NiNoModel::Forward's out-of-place chunk arithmetic, 1.10-1.30
    // with its in-place variant (fewer temporaries per chunk row than the 5h counted).
    EXPECT_LE(ratio, 1.35) << "the estimate is too loose";
  }

  std::shared_ptr<const NiNoModel> model_;
};

TEST_F(EngineMemoryTest, Fm16) { Check(Fm16(), GraphSpec{}, {}, "fm16"); }

TEST_F(EngineMemoryTest, MlpDefaultAndTuned) {
  Check(Mlp(784, 256, 10), GraphSpec{}, {}, "mlp 784-256-256-10");
  NowcastTuning t;
  t.bf16_edge_state = true;
  t.edge_sample_ratio = 0.3;
  t.chunk_bytes = 1 << 20;
  Check(Mlp(784, 256, 10), GraphSpec{}, t, "mlp bf16 sampled 1 MiB chunks");
}

TEST_F(EngineMemoryTest, Gpt2FullAndSubgraph) {
  const GraphSpec spec = Kind(GraphSpec::Kind::kGpt2, 4);
  Check(Gpt2(3, 64, 256, 128, 256), spec, {}, "gpt2 3-64 bytes");
  NowcastTuning t;
  t.subgraph = true;
  Check(Gpt2(3, 64, 256, 128, 256), spec, t, "gpt2 3-64 subgraph");
}

TEST_F(EngineMemoryTest, DescribedResidualCnn) {
  Check(ResidualCnn(32), ResidualCnnSpec(), {}, "described residual cnn");
}

TEST_F(EngineMemoryTest, Llama) {
  Check(Llama(512, 64, 2, 4, 2, 172, false), Kind(GraphSpec::Kind::kLlama, 4, 2), {}, "llama 2-64");
}

}  // namespace
}  // namespace nino
