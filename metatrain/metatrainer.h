// The NiNo meta-training loop (shared/spec/META_TRAINING.md section 4): batches of
// `batch_trajectories` slices x 4 shifted windows (16 disjoint graphs by default), masked L1 in
// scaled space, AdamW (lr 3e-3, weight decay 1e-2) with cosine decay to 1e-6 over `steps`,
// global gradient-norm clipping at 5, float32.
//
// Contract:
// - Out folder: train_state.pt (TrainState, every ckpt_every steps and at the end),
//   metrics.jsonl (one line per step: step, loss, lr, grad_norm, wall_seconds; and a line per
//   validation: step, val_l1, val_l1_no_change, windows), and `model_out` in the official
//   checkpoint layout (NiNoModel::Load reads it), rewritten at every checkpoint and at the end.
// - Resumable: Create() finds out/train_state.pt and continues from it exactly (weights, AdamW
//   state, step, RNG, the training datasets recorded at the first start); a checkpoint made with
//   another configuration (variant, sizes, recipe, seed) is refused. metrics.jsonl lines after
//   the checkpoint's step are dropped on resume.
// - A non-finite loss or gradient norm rolls back to the last checkpoint, re-seeds the sampler
//   (so the same batch is not drawn again), logs "NaN ... rolled back to step S" and goes on;
//   after max_rollbacks such events the run fails (RESOURCE_EXHAUSTED).
#ifndef NINO_METATRAIN_METATRAINER_H_
#define NINO_METATRAIN_METATRAINER_H_

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "metatrain/train_state.h"
#include "metatrain/trainable_nino.h"
#include "metatrain/trajectory_windows.h"

namespace nino::metatrain {

struct MetaTrainOptions {
  std::vector<std::string> train_dirs;  // ignored on resume (the checkpoint's list is used)
  std::vector<std::string> val_dirs;    // held-out trajectories (may be empty)
  bool gnn = false;                     // false: WNN+
  int64_t hid = 128;
  // Feature slots per edge the model takes (9 = 3x3 kernels, as the official models; 25 = 5x5).
  // A GNN refuses training data with wider kernels; WNN+ reads each slot alone.
  int64_t max_feat_size = 9;
  int64_t steps = 20000;
  int64_t batch_trajectories = 4;  // slices per batch, each giving 4 windows
  double lr = 3e-3, min_lr = 1e-6, weight_decay = 1e-2, clip = 5.0;
  uint64_t seed = 0;
  std::string out_dir;
  std::string model_out;  // default: <out_dir>/nino.pt
  int64_t ckpt_every = 200;
  int64_t log_every = 50;       // stderr progress lines (metrics.jsonl gets every step)
  int64_t val_every = 0;        // 0: validate only at the end
  int64_t val_slices = 8;       // validation slices per held-out trajectory
  int64_t wte_size = 1000;      // LM data: token-embedding rows kept per sample (0: all)
  bool lm_global_scale = true;  // LM data: the official GPT-2 global-scaling quirk
  int64_t max_rollbacks = 50;
  double max_seconds = 0;  // > 0: checkpoint and stop after this much wall time
  int64_t stop_at = 0;     // > 0: checkpoint and stop at this step (resumable)
  torch::Device device = torch::kCPU;
  // Test hook: may replace the loss of a step (e.g. inject a NaN).
  std::function<void(int64_t step, torch::Tensor* loss)> loss_hook;
};

class MetaTrainer {
 public:
  static absl::StatusOr<std::unique_ptr<MetaTrainer>> Create(MetaTrainOptions options);
  // Trains up to options.steps (or max_seconds); writes the final model when steps are done.
  absl::Status Run();

  const TrainableNiNo& model() const { return *model_; }
  const TrainProgress& progress() const { return progress_; }
  bool finished() const { return progress_.step >= options_.steps; }
  const std::string& state_path() const { return state_path_; }

 private:
  explicit MetaTrainer(MetaTrainOptions options) : options_(std::move(options)) {}
  nlohmann::json RecipeJson() const;
  absl::Status InitOrResume();
  double LearningRate(int64_t step) const;
  // One optimizer step; false when the loss or gradient norm was not finite (nothing applied).
  bool TrainStep(double* loss, double* grad_norm);
  absl::Status RollBack();
  absl::Status Checkpoint();
  absl::Status ValidateAndLog();
  void AppendMetrics(const nlohmann::json& line);
  double WallSeconds() const;

  MetaTrainOptions options_;
  std::string state_path_, metrics_path_;
  std::shared_ptr<TrainableNiNo> model_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::unique_ptr<TrajectoryWindows> train_, val_;
  std::mt19937_64 rng_;
  TrainProgress progress_;
  std::chrono::steady_clock::time_point started_;
  double wall_at_start_ = 0;
};

}  // namespace nino::metatrain

#endif  // NINO_METATRAIN_METATRAINER_H_
