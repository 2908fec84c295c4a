#include "common/nino/memory_estimate.h"

#include <algorithm>
#include <cmath>

namespace nino {
namespace {

constexpr int64_t kI64 = 8, kF32 = 4, kF64 = 8;
// Rows per chunk of per-edge work on a CPU when the options leave it to the checkpoint
// (nino_model.cc, EffectiveChunk).
constexpr int64_t kCpuChunkRows = 16384;
// Eigen::Triplet<double> (two int indices and a double) and one stored entry of an
// Eigen::SparseMatrix<double> (value and int index).
constexpr int64_t kTripletBytes = 16, kSparseEntryBytes = 12;
// The nowcast estimate is raised by 1/32 (3%): measured peaks lie 0.3-5% below the modelled
// terms (memory_estimate_test), and admission must not undercount.
constexpr int64_t kSlackDivisor = 32;

bool ComputesLpe(const NiNoConfig& config, bool compute_lpe) {
  return config.gnn && config.lpe > 0 && compute_lpe;
}

int64_t ChunkRows(const NiNoConfig& config, const NowcastEngineOptions& options) {
  if (options.forward.chunk_rows > 0) return options.forward.chunk_rows;
  const int64_t c = std::max<int64_t>(1, config.chunk_size);
  return options.device.is_cpu() ? std::min(c, kCpuChunkRows) : c;
}

// ComputeLaplacianPE (laplacian_pe.cc), on top of what the part keeps: the triplet list
// (2 E entries reserved), the uncompressed transpose Eigen's setFromTriplets fills and the
// compressed result, then the solver's working set next to the normalised adjacency.
int64_t LpeBytes(const GraphSize& g, const NiNoConfig& config) {
  const int64_t n = g.nodes, k = config.lpe;
  const int64_t links = std::max<int64_t>(0, g.edges - g.nodes);  // edges that are not self-loops
  const int64_t adjacency = kSparseEntryBytes * 2 * links + 4 * (n + 1);
  const int64_t assembly = kTripletBytes * 2 * g.edges + (adjacency + 4 * (n + 1)) + adjacency;
  int64_t solver = 0;
  if (n <= LpeOptions{}.dense_max_nodes) {
    solver = 6 * kF64 * n * n;  // L, the dense copy of M, eigenvectors, workspace
  } else {
    const int64_t nev = k + 1;
    const int64_t ncv = std::min<int64_t>(n, std::max<int64_t>(4 * nev, 64));
    solver = kF64 * n * (2 * ncv + 2 * nev + 8) + 4 * kF64 * ncv * ncv;
  }
  const int64_t solve = adjacency + kF64 * n + solver + 2 * kF64 * n * k;
  return std::max(assembly, solve);
}

}  // namespace

int64_t GrownCapacity(int64_t n) {
  int64_t cap = 0;
  while (cap < n) cap = cap == 0 ? 1 : 2 * cap;
  return cap;
}

int64_t NowcastMemoryEstimate::total_nodes() const {
  int64_t n = 0;
  for (const GraphSize& p : parts) n += p.nodes;
  return n;
}

int64_t NowcastMemoryEstimate::total_edges() const {
  int64_t n = 0;
  for (const GraphSize& p : parts) n += p.edges;
  return n;
}

int64_t NowcastMemoryEstimate::engine_bytes() const {
  return graph_bytes + std::max(build_bytes, nowcast_bytes + heap_slack_bytes);
}

int64_t PartGraphBytes(const GraphSize& g, const NiNoConfig& config, bool compute_lpe) {
  const int64_t E = g.edges, N = g.nodes, F = g.feat_size, cap = GrownCapacity(E);
  const int64_t vectors = 3 * kI64 * cap + kI64 * F * cap + kI64 * N;  // src dst type; slots; pos_w
  const int64_t tensors = 2 * kI64 * E                                 // edge_index
                          + kI64 * E                                   // edge_type
                          + kI64 * N                                   // pos_w
                          + kI64 * E * F                               // gather_index
                          + 2 * kI64 * g.params;  // scatter_slots, scatter_rows
  const int64_t pos = ComputesLpe(config, compute_lpe) ? kF32 * N * config.lpe : 0;
  return vectors + tensors + pos;
}

int64_t PartBuildBytes(const GraphSize& g, const NiNoConfig& config, bool compute_lpe) {
  const int64_t EF = g.edges * g.feat_size;
  // The last doubling of the slot vector: its old buffer next to the new one.
  const int64_t growth = kI64 * g.feat_size * GrownCapacity(g.edges) / 2;
  // The [E*F] slot-index tensor, its intermediate copy and a comparison mask.
  const int64_t indices = 2 * kI64 * EF + EF;
  const int64_t lpe = ComputesLpe(config, compute_lpe) ? LpeBytes(g, config) : 0;
  return std::max({growth, indices, kI64 * EF + lpe});
}

int64_t PartChunkBytes(const GraphSize& g, const NiNoConfig& config,
                       const NowcastEngineOptions& options) {
  const int64_t h = config.hid;
  if (!config.gnn) {  // WNN+: per-row MLP activations
    const int64_t rows =
        std::min(ChunkRows(config, options), std::max<int64_t>(1, g.edges * g.feat_size));
    // bfloat16 products add the rounded input and the bfloat16 output of a layer.
    const bool bf16_products = options.forward.matmul_dtype == torch::kBFloat16;
    return (bf16_products ? 5 : 4) * kF32 * h * rows;
  }
  const int64_t rows = std::min(ChunkRows(config, options), std::max<int64_t>(1, g.edges));
  const bool bf16 = options.forward.edge_state_dtype == torch::kBFloat16;
  // One chunk of messages: edge-encoder output [rows, 2h], gathered node terms, the message;
  // a bfloat16 state adds its float32 copy, edge sampling the gathered rows and node ids.
  // bfloat16 products add the rounded input [rows, h] and the bfloat16 output [rows, 2h].
  const bool bf16_products = options.forward.matmul_dtype == torch::kBFloat16;
  int64_t chunk = kF32 * h * rows * ((bf16 ? 6 : 5) + (bf16_products ? 2 : 0));
  const double ratio = options.forward.edge_sample_ratio;
  if (ratio > 0 && ratio < 1) chunk += kF32 * h * rows + 2 * kI64 * rows;
  return chunk;
}

int64_t PartForwardBytes(const GraphSize& g, const NiNoConfig& config,
                         const NowcastEngineOptions& options) {
  const int64_t E = g.edges, N = g.nodes, EF = g.edges * g.feat_size, h = config.hid;
  const int64_t chunk = PartChunkBytes(g, config, options);
  if (!config.gnn) {
    // WNN+: the repeated edge types, the head output and its residual sum, the chunks.
    return kI64 * EF + 3 * kF32 * EF + chunk;
  }
  const int64_t rows = std::min(ChunkRows(config, options), std::max<int64_t>(1, E));
  const bool bf16 = options.forward.edge_state_dtype == torch::kBFloat16;
  const int64_t edge_state = E * h * (bf16 ? 2 : kF32);
  // Node features of a message-passing layer: h, the two projections, the aggregate, the post
  // projections, the new h and the edge-update projections; the in-degree counts.
  const int64_t nodes = 9 * kF32 * N * h + 4 * kI64 * N;
  int64_t sampling = 0;
  const double ratio = options.forward.edge_sample_ratio;
  if (ratio > 0 && ratio < 1) {
    const int64_t m = static_cast<int64_t>(std::floor(static_cast<double>(E) * ratio));
    sampling = kI64 * E + 3 * kI64 * m + kI64 * N;  // permutation, sorted sample, its targets
  }
  // Contiguous copies of weight halves and rows (edge_proj, pre/post projections, head rows).
  const int64_t weight_slices = 8 * kF32 * h * h;
  const int64_t layers = nodes + chunk + sampling + weight_slices;
  const int64_t head = kF32 * N * h + kF32 * EF + 2 * kF32 * h * rows;
  const int64_t residual = 3 * kF32 * EF;  // delta, delta * scale, the sum
  return edge_state + std::max({layers, head, residual});
}

absl::StatusOr<NowcastMemoryEstimate> EstimateNowcastMemory(const std::vector<ParamSpec>& params,
                                                            const GraphSpec& spec,
                                                            const NiNoConfig& config,
                                                            const NowcastEngineOptions& options) {
  absl::StatusOr<std::vector<GraphSize>> parts = CountEngineGraphs(params, spec, options.subgraph);
  if (!parts.ok()) return parts.status();
  NowcastMemoryEstimate est;
  est.parts = std::move(*parts);
  const int64_t P = TotalParams(params), C = config.ctx;
  int64_t largest_tensor = 0;
  for (const ParamSpec& p : params) largest_tensor = std::max(largest_tensor, p.numel);

  int64_t largest_part = 0;
  for (const GraphSize& g : est.parts) {
    est.graph_bytes += PartGraphBytes(g, config, options.compute_lpe);
    est.build_bytes = std::max(est.build_bytes, PartBuildBytes(g, config, options.compute_lpe));
    // Gathered features [E*F, C] next to the padded scaled rows, the forward pass, or the
    // output and its scattered rows.
    const int64_t features = kF32 * C * g.edges * g.feat_size;
    const int64_t padded = kF32 * C * (g.params + 3);
    const int64_t output = kF32 * g.edges * g.feat_size + kF32 * g.params;
    largest_part = std::max(
        largest_part, features + std::max({padded, PartForwardBytes(g, config, options), output}));
    est.heap_slack_bytes = std::max(est.heap_slack_bytes, PartChunkBytes(g, config, options));
  }
  const int64_t context = kF32 * C * P;  // the caller's stacked snapshots
  // ScaleStates: the transposed copy, the scaled result, one tensor's two temporaries.
  const int64_t scaling = context + 2 * kF32 * C * P + 2 * kF32 * C * largest_tensor;
  // From scaling on: the context, the scaled states and the flat prediction.
  const int64_t held = context + kF32 * C * P + kF32 * P;
  // The finite check, the unscaled output and one tensor's temporaries.
  const int64_t unscale = P + kF32 * P + 2 * kF32 * largest_tensor;
  est.nowcast_bytes = std::max({scaling, held + largest_part, held + unscale});
  // Headroom for what the terms above leave out (reduction buffers, small index tensors).
  est.nowcast_bytes += est.nowcast_bytes / kSlackDivisor;
  // A Predict may stack its context while the graph is still being built.
  est.build_bytes += context;
  return est;
}

}  // namespace nino
