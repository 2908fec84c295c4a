// The NiNo network (shared/spec/NINO_SPEC.md section 2): the GNN variant (nino*.pt) and the
// WNN+ per-parameter MLP (nino_mlp*.pt), inference only.
//
// The computation is restructured but numerically the official one (up to float summation
// order): per-node projections replace per-edge concatenations ([h_dst ; h_src] W^T =
// h_dst W_t^T + h_src W_s^T), the third message-passing layer is skipped (it cannot influence
// the output when final_edge_update is false), and only output row k of the head is computed.
// All per-edge work runs in chunks of `chunk_edges` rows to bound temporary memory.
#ifndef NINO_COMMON_NINO_NINO_MODEL_H_
#define NINO_COMMON_NINO_NINO_MODEL_H_

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/io/torch_file.h"

namespace nino {

// Model hyper-parameters: the official defaults, overridden by a checkpoint's model_args.
struct NiNoConfig {
  int64_t ctx = 5;
  int64_t hid = 128;
  int64_t layers = 3;
  bool gnn = true;
  int64_t max_feat_size = 9;
  int64_t seq_len = 40;
  bool wte_pos_enc = true;
  int64_t vocab_size = 50257;
  int64_t edge_types = 15;
  int64_t lpe = 8;
  double upd_scale = 1.0;
  int64_t chunk_size = 1000000;
};

// Per-call options of a forward pass: memory and speed settings of the official wrapper, none of
// them part of the checkpoint.
struct ForwardOptions {
  // Edge sampling (NINO_SPEC.md 2.5): with 0 < r < 1 every message-passing layer draws its own
  // random floor(E * r) edges, computes messages only for them and averages each node's
  // messages over its sampled in-edges (at least 1; nodes without one get 0). The edge updates
  // and the head still run on all edges. 0 (or >= 1): all edges, the exact computation.
  double edge_sample_ratio = 0.0;
  // Seed of the samples (layer l draws with seed + l): a nowcast is reproducible given it.
  uint64_t edge_sample_seed = 0;
  // Storage dtype of the [E, hid] edge state kept between layers: float32 (exact), or bfloat16
  // (half the largest tensor of a step: 256 instead of 512 bytes per edge at hid 128; every
  // chunk is still computed in float32, only the stored state is rounded).
  torch::ScalarType edge_state_dtype = torch::kFloat32;
  // Precision of the per-edge hid x hid (and hid x 2hid) matrix products, which are most of a
  // step's arithmetic: float32 (exact, the default), or bfloat16 (inputs and weights rounded to
  // bfloat16, oneDNN's AVX512-BF16 / AMX kernels where the CPU has them; the element-wise work,
  // the edge projection, the node products and the head stay float32). An approximation: see
  // docs/BENCHMARKS.md for its effect on the golden cases and on steps to target.
  torch::ScalarType matmul_dtype = torch::kFloat32;
  // Rows of per-edge work per chunk; 0 = the checkpoint's chunk_size (capped at 16,384 rows on
  // a CPU). ChunkRowsForBudget() turns a memory budget into rows.
  int64_t chunk_rows = 0;
};

// Chunk rows whose temporaries fit in `bytes`: a GNN chunk row holds about 6 * hid float32
// values of temporaries (edge-encoder output [2h], gathered node terms, message, ...), a WNN+
// row (of E*F rows) about 3 * hid. At least 1024 rows.
int64_t ChunkRowsForBudget(int64_t bytes, int64_t hid, bool gnn);

// Optional capture of intermediate tensors for debugging / parity reports. Edge tensors are the
// first `max_edge_rows` rows.
struct NiNoTrace {
  int64_t max_edge_rows = 1024;
  torch::Tensor h0, e0, conv0_out, e1, conv1_out, e2;  // GNN
  torch::Tensor mlp_edge_proj;                         // WNN+: first rows of edge_proj output
  torch::Tensor delta;                                 // [E, F] head output before residual
  std::vector<torch::Tensor> sampled_edges;            // edge sampling: ids per active layer
};

class NiNoModel {
 public:
  // Loads a torch.save checkpoint {"state_dict": ..., "model_args": {...}} (or a bare state
  // dict). Strict: every expected key present with its exact shape, no unexpected keys, all
  // values finite. Errors name the file and the key.
  static absl::StatusOr<NiNoModel> Load(const std::string& path);
  // Same from an already decoded torch.save value (LoadTorchBytes, an embedded model);
  // `source_name` names it in errors.
  static absl::StatusOr<NiNoModel> FromTorchValue(const io::PickleValue& file,
                                                  const std::string& source_name);
  // Same from an already decoded state dict and model_args (may be None).
  static absl::StatusOr<NiNoModel> FromStateDict(const io::NamedTensors& state_dict,
                                                 const io::PickleValue& model_args,
                                                 const std::string& source_name);

  // A randomly initialised NiNo in the exact official layout of `config` (the keys and shapes
  // Load() expects), for tests and demos that must not depend on the official checkpoints:
  // weights ~ N(0, 1/fan_in) (activations stay O(1) through the layers), biases 0, the head's
  // output layer (edge_out.fc.2 / edge_mlp.fc.6) ~ N(0, 1e-3^2), so that a prediction stays
  // close to the last state (about 1e-3 of the scaled state per step) without being equal to
  // it. Deterministic given `seed`. model_args records every field of `config`, so Save() then
  // Load() gives back the same model. INVALID_ARGUMENT for a config Load() would refuse.
  static absl::StatusOr<NiNoModel> Synthetic(const NiNoConfig& config, uint64_t seed);

  // Writes {"state_dict": OrderedDict, "model_args": dict} in torch.save format (readable by
  // Python's torch.load and by Load), atomically.
  absl::Status Save(const std::string& path) const;

  const NiNoConfig& config() const { return config_; }
  const io::PickleValue& model_args() const { return model_args_; }
  bool is_gnn() const { return config_.gnn; }
  int64_t num_parameters() const;
  const io::NamedTensors& state_dict() const { return ordered_; }

  // Moves all weights to `device` (e.g. CUDA).
  void To(const torch::Device& device);
  torch::Device device() const;

  // Sets chunk size and update scale (wrapper kwargs of the official code).
  void set_chunk_size(int64_t rows) { config_.chunk_size = rows > 0 ? rows : 1; }
  void set_upd_scale(double s) { config_.upd_scale = s; }

  // edge_attr: [E, 5F] float32 scaled features (column f*5 + c); edge_type [E] int64;
  // edge_index [2, E] int64; pos [N, lpe] float32 (GNN only; ignored by WNN+); pos_w [N] int64
  // (only with wte_pos_enc). k in 1..seq_len. Returns Y [E, F] = x_{e,f,last} + upd * delta.
  // Throws c10::Error on shape errors (callers validate inputs first).
  torch::Tensor Forward(const torch::Tensor& edge_attr, const torch::Tensor& edge_type,
                        const torch::Tensor& edge_index, const torch::Tensor& pos,
                        const torch::Tensor& pos_w, int k, NiNoTrace* trace = nullptr,
                        const ForwardOptions& options = {}) const;

 private:
  torch::Tensor ForwardGnn(const torch::Tensor& x, const torch::Tensor& et, const torch::Tensor& ei,
                           const torch::Tensor& pos, const torch::Tensor& pos_w, int k,
                           NiNoTrace* trace, const ForwardOptions& options) const;
  torch::Tensor ForwardMlp(const torch::Tensor& x, const torch::Tensor& et, int k, NiNoTrace* trace,
                           const ForwardOptions& options) const;
  const torch::Tensor& W(const std::string& key) const { return weights_.at(key); }

  NiNoConfig config_;
  std::map<std::string, torch::Tensor> weights_;
  io::NamedTensors ordered_;
  io::PickleValue model_args_;
};

}  // namespace nino

#endif  // NINO_COMMON_NINO_NINO_MODEL_H_
