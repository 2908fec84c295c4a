// One NiNo step for a fixed model layout (shared/spec/NINO_SPEC.md section 1): scale the 5
// context states, gather edge features through the neural graph, run the NiNo network for
// horizon k, scatter back to a flat vector, check it, unscale.
//
// The graph, its positional encoding and the gather/scatter indices are built once at Create()
// and reused by every Nowcast() call. Thread-compatible: one Nowcast() at a time per engine.
//
// Subgraph mode (NINO_SPEC.md 5.4) splits a transformer into one graph per block: each part
// has its own graph, node numbering and positional encoding, scaling stays per tensor over the
// whole state, and the parts' predictions are concatenated. Message passing never crosses a
// block boundary, so results differ from the full graph (as in the official code); the largest
// graph, and with it the step's memory, shrinks by about the number of blocks.
#ifndef NINO_COMMON_NINO_NOWCAST_ENGINE_H_
#define NINO_COMMON_NINO_NOWCAST_ENGINE_H_

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/nino/laplacian_pe.h"
#include "common/nino/neural_graph.h"
#include "common/nino/nino_model.h"
#include "common/nino/scaling.h"

namespace nino {

struct NowcastEngineOptions {
  LpeOptions lpe;           // used only by GNN checkpoints
  bool compute_lpe = true;  // false: the caller supplies it via SetPositionalEncoding
  torch::Device device = torch::kCPU;
  ForwardOptions forward;  // edge sampling, bf16 edge state, chunk rows
  // Subgraph mode: GPT-2 layouts only ("transformer.h.<i>." / "h.<i>." blocks); parameters
  // before the first block join block 0's graph, those after the last (ln_f) the last one.
  bool subgraph = false;
};

// The memory and speed settings a user picks for a nowcast (tool flags, a nowcaster job's
// options, trainer flags), in one place.
struct NowcastTuning {
  double edge_sample_ratio = 0.0;  // 0: all edges (exact); 0 < r < 1: per-layer sample (2.5)
  uint64_t edge_sample_seed = 0;
  bool subgraph = false;         // one graph per transformer block (GPT-2)
  bool bf16_edge_state = false;  // store the [E, hid] edge state in bfloat16
  bool bf16_matmul = false;      // per-edge hid x hid products in bfloat16 (approximate)
  int64_t chunk_bytes = 0;       // memory for per-edge temporaries; 0: the default chunking
};
// Sets `options` from `tuning` for a model of hidden size `hid`. INVALID_ARGUMENT naming the
// field for a ratio outside [0, 1] or negative chunk_bytes.
absl::Status ApplyTuning(const NowcastTuning& tuning, const NiNoConfig& config,
                         NowcastEngineOptions* options);

// Subgraph mode's split of a GPT-2 parameter table: consecutive groups, one per block, each
// renamed to a one-block GPT-2 (its block as "h.0.") with offsets from the group's first row.
struct ParamGroup {
  int64_t row_begin = 0;  // first row of the group in the flat vector
  int64_t rows = 0;
  std::vector<ParamSpec> params;  // renamed, offsets relative to row_begin
};
// INVALID_ARGUMENT if the layout has no transformer blocks, or its kind is not GPT-2.
absl::StatusOr<std::vector<ParamGroup>> SplitIntoBlocks(const std::vector<ParamSpec>& params,
                                                        const GraphSpec& spec);

// Intermediates of one nowcast, for parity reports and debugging.
struct NowcastDetails {
  ScaledStates scaled;             // [P, C] scaled states and per-tensor (mu, sigma)
  torch::Tensor edge_attr;         // [E, C*F]
  torch::Tensor pred_edges;        // [E, F] model output (scaled space, after residual)
  torch::Tensor pred_scaled_flat;  // [P]
  NiNoTrace trace;
};

class NowcastEngine {
 public:
  // Builds the graph for `params` per `spec`; computes the positional encoding when the model
  // is a GNN. INVALID_ARGUMENT for layouts the graph cannot map or that the model cannot take
  // (e.g. conv kernels with more than max_feat_size slots for a GNN checkpoint).
  static absl::StatusOr<std::unique_ptr<NowcastEngine>> Create(
      std::shared_ptr<const NiNoModel> model, std::vector<ParamSpec> params, GraphSpec spec,
      NowcastEngineOptions options = {});

  // Replaces the positional encoding (e.g. with the exact one of the official run). [N, lpe].
  // Single-graph engines only.
  absl::Status SetPositionalEncoding(const torch::Tensor& pos);

  // states: [C, P] (C = 5 context snapshots, oldest first, last = current parameters), any
  // float dtype, any device. Returns the predicted flat parameters [P] float32 on CPU.
  // INVALID_ARGUMENT for wrong shapes or k outside 1..seq_len, or non-finite inputs;
  // INTERNAL "NaNs in the predicted parameters" if the prediction is not finite.
  absl::StatusOr<torch::Tensor> Nowcast(const torch::Tensor& states, int k,
                                        NowcastDetails* details = nullptr) const;

  // The graph (in subgraph mode: the first part's).
  const NeuralGraph& graph() const { return parts_.front().graph; }
  int num_parts() const { return static_cast<int>(parts_.size()); }
  const NeuralGraph& part_graph(int i) const { return parts_.at(i).graph; }
  int64_t total_nodes() const;
  int64_t total_edges() const;
  const std::vector<ParamSpec>& params() const { return params_; }
  const torch::Tensor& positional_encoding() const { return parts_.front().pos; }
  const NiNoModel& model() const { return *model_; }
  double graph_build_seconds() const { return graph_build_seconds_; }
  double lpe_seconds() const { return lpe_seconds_; }

 private:
  NowcastEngine() = default;

  // One graph and its indices (the whole model, or one block in subgraph mode).
  struct Part {
    int64_t row_begin = 0, rows = 0;  // the part's rows of the flat vector
    NeuralGraph graph;
    torch::Tensor edge_index, edge_type, pos, pos_w;  // on the device
    torch::Tensor gather_index;                       // [E*F] rows into [scaled part rows; 0; 1; 2]
    torch::Tensor scatter_slots;                      // slots (flat e*F+f) that hold a parameter
    torch::Tensor scatter_rows;                       // their rows within the part
  };
  absl::Status BuildPart(std::vector<ParamSpec> params, const GraphSpec& spec, Part* part);

  std::shared_ptr<const NiNoModel> model_;
  std::vector<ParamSpec> params_;
  std::vector<Part> parts_;
  NowcastEngineOptions options_;
  double graph_build_seconds_ = 0, lpe_seconds_ = 0;
};

}  // namespace nino

#endif  // NINO_COMMON_NINO_NOWCAST_ENGINE_H_
