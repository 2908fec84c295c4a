// One NiNo step for a fixed model layout (shared/spec/NINO_SPEC.md section 1): scale the 5
// context states, gather edge features through the neural graph, run the NiNo network for
// horizon k, scatter back to a flat vector, check it, unscale.
//
// The graph, its positional encoding and the gather/scatter indices are built once at Create()
// and reused by every Nowcast() call. Thread-compatible: one Nowcast() at a time per engine.
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
  LpeOptions lpe;                 // used only by GNN checkpoints
  bool compute_lpe = true;        // false: the caller supplies it via SetPositionalEncoding
  torch::Device device = torch::kCPU;
};

// Intermediates of one nowcast, for parity reports and debugging.
struct NowcastDetails {
  ScaledStates scaled;            // [P, C] scaled states and per-tensor (mu, sigma)
  torch::Tensor edge_attr;        // [E, C*F]
  torch::Tensor pred_edges;       // [E, F] model output (scaled space, after residual)
  torch::Tensor pred_scaled_flat; // [P]
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
  absl::Status SetPositionalEncoding(const torch::Tensor& pos);

  // states: [C, P] (C = 5 context snapshots, oldest first, last = current parameters), any
  // float dtype, any device. Returns the predicted flat parameters [P] float32 on CPU.
  // INVALID_ARGUMENT for wrong shapes or k outside 1..seq_len, or non-finite inputs;
  // INTERNAL "NaNs in the predicted parameters" if the prediction is not finite.
  absl::StatusOr<torch::Tensor> Nowcast(const torch::Tensor& states, int k,
                                        NowcastDetails* details = nullptr) const;

  const NeuralGraph& graph() const { return graph_; }
  const std::vector<ParamSpec>& params() const { return params_; }
  const torch::Tensor& positional_encoding() const { return pos_; }
  const NiNoModel& model() const { return *model_; }
  double graph_build_seconds() const { return graph_build_seconds_; }
  double lpe_seconds() const { return lpe_seconds_; }

 private:
  NowcastEngine() = default;

  std::shared_ptr<const NiNoModel> model_;
  std::vector<ParamSpec> params_;
  NeuralGraph graph_;
  NowcastEngineOptions options_;
  torch::Tensor edge_index_, edge_type_, pos_, pos_w_;  // on the device
  torch::Tensor gather_index_;   // [E*F] rows into [scaled; 0; 1; 2]
  torch::Tensor scatter_slots_;  // slots (flat e*F+f) that hold a parameter
  torch::Tensor scatter_rows_;   // their parameter rows
  double graph_build_seconds_ = 0, lpe_seconds_ = 0;
};

}  // namespace nino

#endif  // NINO_COMMON_NINO_NOWCAST_ENGINE_H_
