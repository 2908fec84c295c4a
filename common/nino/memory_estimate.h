// How much host memory a NowcastEngine takes, estimated from the layout alone (parameter names
// and shapes, graph kind, NiNo model configuration, engine options) before anything is built:
// what a server must reserve to admit a job without running out of memory.
//
// Three figures, all in bytes (docs/MEMORY_ADMISSION.md derives every term):
//   graph_bytes    what the engine keeps while it lives: per graph part the NeuralGraph's
//                  vectors (src, dst, type, param_index at their std::vector capacities, pos_w),
//                  the index tensors (edge_index, edge_type, pos_w, gather_index, scatter
//                  slots/rows) and the Laplacian positional encoding. Exact for CPU engines.
//   build_bytes    the peak on top of graph_bytes while NowcastEngine::Create runs: edge-list
//                  growth, the temporary slot-index tensors, and the positional encoding's
//                  symmetric adjacency, triplets and eigen-solver (Lanczos basis or dense
//                  matrices).
//   nowcast_bytes  the peak on top of graph_bytes during one Nowcast() at the options' tuning,
//                  including the caller's stacked [ctx, P] context: scaling copies, the gathered
//                  edge features [E, F*ctx], the edge state [E, hid] (float32 or bfloat16), node
//                  features, the per-chunk temporaries (rows from the chunk options), the head
//                  output and the unscaled prediction. Upper bound within 35% of the measured
//                  tensor peak (memory_estimate_test).
//   heap_slack_bytes  resident memory a nowcast adds beyond its live tensors: glibc serves
//                  blocks up to 32 MiB from the heap (runtime::TuneAllocatorForTensors), and the
//                  chunk temporaries, freed and reallocated around longer-lived node and
//                  feature tensors, leave holes. One more set of chunk temporaries (measured
//                  0 to 1.4 sets; docs/MEMORY_ADMISSION.md).
// A live engine therefore needs at most graph_bytes + max(build_bytes, nowcast_bytes +
// heap_slack_bytes) of resident memory (engine_bytes()). Host memory only: on a CUDA device the
// tensors live on the GPU and the estimate bounds the host side from above.
#ifndef NINO_COMMON_NINO_MEMORY_ESTIMATE_H_
#define NINO_COMMON_NINO_MEMORY_ESTIMATE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/nino/graph_size.h"
#include "common/nino/neural_graph.h"
#include "common/nino/nino_model.h"
#include "common/nino/nowcast_engine.h"

namespace nino {

struct NowcastMemoryEstimate {
  std::vector<GraphSize> parts;  // the engine's graphs (one unless subgraph mode)
  int64_t graph_bytes = 0;
  int64_t build_bytes = 0;
  int64_t nowcast_bytes = 0;
  int64_t heap_slack_bytes = 0;

  int64_t total_nodes() const;
  int64_t total_edges() const;
  // The most an engine adds to the process's resident memory at any time:
  // graph_bytes + max(build_bytes, nowcast_bytes + heap_slack_bytes).
  int64_t engine_bytes() const;
};

// INVALID_ARGUMENT if the layout's graph cannot be counted (graph_size.h). Reads of `options`:
// subgraph, device (chunk rows on a CPU), compute_lpe, forward (edge sampling, edge state dtype,
// chunk rows).
absl::StatusOr<NowcastMemoryEstimate> EstimateNowcastMemory(const std::vector<ParamSpec>& params,
                                                            const GraphSpec& spec,
                                                            const NiNoConfig& config,
                                                            const NowcastEngineOptions& options);

// The pieces, for one graph part of `size` (exposed for tests and reports).
// What a built part keeps (vectors at capacity, index tensors, positional encoding).
int64_t PartGraphBytes(const GraphSize& size, const NiNoConfig& config, bool compute_lpe);
// Peak on top of the part's kept bytes while it is built.
int64_t PartBuildBytes(const GraphSize& size, const NiNoConfig& config, bool compute_lpe);
// Peak of NiNoModel::Forward on the part's gathered features, on top of them.
int64_t PartForwardBytes(const GraphSize& size, const NiNoConfig& config,
                         const NowcastEngineOptions& options);
// The chunk temporaries of one nowcast of the part (the heap slack is the largest of them).
int64_t PartChunkBytes(const GraphSize& size, const NiNoConfig& config,
                       const NowcastEngineOptions& options);
// The capacity std::vector reaches after `n` push_backs from empty (libstdc++ doubles).
int64_t GrownCapacity(int64_t n);

}  // namespace nino

#endif  // NINO_COMMON_NINO_MEMORY_ESTIMATE_H_
