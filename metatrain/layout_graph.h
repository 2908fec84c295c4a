// The neural graph of one parameter layout, prepared for meta-training: the graph of our
// library (BuildGraph), its Laplacian positional encoding (GNN only), and the gather indices
// that turn flat parameter states into edge features and targets.
//
// Contract: MakeSample(inputs [ctx, P], targets [K, P]) implements steps 7-8 of
// shared/spec/META_TRAINING.md section 2 for one window: per-tensor 'std' scaling with the
// inputs' statistics (common/nino/scaling, exactly the inference scaling), the targets scaled
// with the same mu and sigma, edge features gathered as at inference (constants 1.0 / 2.0 of
// residual/head/self-loop edges written after scaling), targets zero-padded to seq_len horizons
// and y_mask = 1 only on real parameter slots and available horizons. `pos_sign` ([lpe] of
// +-1, or undefined) multiplies the LPE columns (the sign-flip augmentation). `pos_w` ([N]
// int64, or undefined for the graph's own: token id + 1 on the wte nodes of GPT-2 / Llama
// graphs, 0 elsewhere) becomes the sample's pos_w.
// global_scale (the official LM training quirk, META_TRAINING.md section 2 item 7): one mu and
// sigma over the whole flat vector instead of one per tensor, for inputs and targets alike.
#ifndef NINO_METATRAIN_LAYOUT_GRAPH_H_
#define NINO_METATRAIN_LAYOUT_GRAPH_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/nino/neural_graph.h"
#include "metatrain/graph_sample.h"

namespace nino::metatrain {

class LayoutGraph {
 public:
  // lpe_dim = 0: no positional encoding (WNN+). INVALID_ARGUMENT for a layout the graph
  // builders cannot map; the LPE solver's errors otherwise.
  static absl::StatusOr<std::shared_ptr<const LayoutGraph>> Create(std::vector<ParamSpec> params,
                                                                   const GraphSpec& spec,
                                                                   int64_t lpe_dim,
                                                                   bool global_scale = false);

  // inputs: [ctx, P] (oldest first), targets: [K, P] with 0 <= K <= seq_len, any float dtype.
  GraphSample MakeSample(const torch::Tensor& inputs, const torch::Tensor& targets, int64_t seq_len,
                         const torch::Tensor& pos_sign = {}, const torch::Tensor& pos_w = {}) const;

  const std::vector<ParamSpec>& params() const { return params_; }
  const NeuralGraph& graph() const { return graph_; }
  const torch::Tensor& pos() const { return pos_; }      // [N, lpe] or undefined
  const torch::Tensor& pos_w() const { return pos_w_; }  // [N] int64, the graph's own
  bool global_scale() const { return global_scale_; }
  int64_t num_params() const { return graph_.num_params; }

 private:
  LayoutGraph() = default;

  std::vector<ParamSpec> params_;
  std::vector<ParamSpec> scale_params_;  // params_, or one tensor of all P rows (global_scale)
  bool global_scale_ = false;
  NeuralGraph graph_;
  torch::Tensor edge_index_, edge_type_, pos_, pos_w_;
  torch::Tensor gather_;      // [E*F] rows of [scaled P rows; 0; 1; 2]
  torch::Tensor slot_valid_;  // [E*F] float32, 1 where the slot holds a parameter
  torch::Tensor row_tensor_;  // [P] int64, the scaling group (tensor, or 0) of each flat row
};

}  // namespace nino::metatrain

#endif  // NINO_METATRAIN_LAYOUT_GRAPH_H_
