// A differentiable NiNo (shared/spec/NINO_SPEC.md section 2) for meta-training: the GNN variant
// (as nino_no_posw.pt / nino.pt) and the WNN+ per-parameter MLP (as nino_mlp*.pt), built from
// autograd ops, predicting all seq_len horizons at once (DMS head).
//
// Contract:
// - The parameters have the official state_dict keys and shapes (the layout NiNoModel::Load
//   expects for the same NiNoConfig); StateDict() exports them in that layout, FromModel()
//   imports any loaded checkpoint, Save() writes {"state_dict", "model_args"} like the official
//   files (model_args holds only the fields that differ from the official defaults).
// - Forward() is the same function as NiNoModel::Forward for every horizon k: column k-1 of its
//   output equals NiNoModel::Forward(..., k) up to float summation order (tested to 1e-6).
//   The third message-passing layer (gnn.convs.<layers-1>) cannot influence the output
//   (final_edge_update=False), so it is not computed: its weights get no gradient, as in the
//   official training, and stay at their initial values.
// - Device- and dtype-generic: all weights follow the module (to(device), to(kDouble)), inputs
//   must be on the same device; nothing is chunked (training batches fit in memory).
#ifndef NINO_METATRAIN_TRAINABLE_NINO_H_
#define NINO_METATRAIN_TRAINABLE_NINO_H_

#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/io/torch_file.h"
#include "common/nino/nino_model.h"

namespace nino::metatrain {

class TrainableNiNo : public torch::nn::Module {
 public:
  // Official initialisation: weights (Linear and Embedding) ~ N(0, 0.02), biases 0,
  // deterministic given `seed`. INVALID_ARGUMENT for a config NiNoModel would refuse.
  static absl::StatusOr<std::shared_ptr<TrainableNiNo>> Create(const NiNoConfig& config,
                                                               uint64_t seed);
  // A copy of a loaded model's weights (official checkpoints included), float32, on CPU.
  static absl::StatusOr<std::shared_ptr<TrainableNiNo>> FromModel(const NiNoModel& model);

  // x: [E, ctx*F] scaled edge features (column f*ctx + c), F <= max_feat_size; edge_type [E]
  // int64; edge_index [2, E] int64 (GNN only); pos [N, lpe] (GNN only); pos_w [N] int64 (only
  // with wte_pos_enc). Returns [E, F, seq_len]: x_{e,f,last} + upd_scale * delta_{e,f,k}.
  torch::Tensor Forward(const torch::Tensor& x, const torch::Tensor& edge_type,
                        const torch::Tensor& edge_index, const torch::Tensor& pos,
                        const torch::Tensor& pos_w = {}) const;
  // WNN+ only: rows [R, ctx] of single feature slots with their edge types [R] -> [R, seq_len]
  // (the per-slot MLP; Forward() applies it to every slot of every edge).
  torch::Tensor ForwardSlots(const torch::Tensor& rows, const torch::Tensor& types) const;

  const NiNoConfig& config() const { return config_; }
  // Official key order (NiNoModel's), detached float32 CPU copies.
  io::NamedTensors StateDict() const;
  // The official model_args: the fields of config() that differ from the official defaults.
  io::PickleValue ModelArgs() const;
  // An inference model with these weights (NiNoModel::FromStateDict, strict).
  absl::StatusOr<NiNoModel> ToNiNoModel() const;
  // Writes the official checkpoint layout atomically (NiNoModel::Save).
  absl::Status Save(const std::string& path) const;
  int64_t num_weights() const;

 private:
  explicit TrainableNiNo(const NiNoConfig& config);
  // Registers `keys` (official names) as parameters with these values.
  void RegisterWeights(const io::NamedTensors& weights);
  const torch::Tensor& W(const std::string& key) const;
  torch::Tensor ForwardGnn(const torch::Tensor& x, const torch::Tensor& edge_type,
                           const torch::Tensor& edge_index, const torch::Tensor& pos,
                           const torch::Tensor& pos_w) const;
  // One message-passing layer l (all but the last): new node features and edge state.
  void MessagePassingLayer(int64_t l, const torch::Tensor& src, const torch::Tensor& dst,
                           const torch::Tensor& inv_count, torch::Tensor* h,
                           torch::Tensor* e) const;

  NiNoConfig config_;
  std::vector<std::string> keys_;  // official order
  // Handles of the registered parameters (the same tensors: to() and load() update them).
  std::map<std::string, torch::Tensor> weights_;
};

// Official key <-> registered parameter name (torch::nn forbids dots in parameter names).
std::string ParameterName(const std::string& official_key);

}  // namespace nino::metatrain

#endif  // NINO_METATRAIN_TRAINABLE_NINO_H_
