// The training checkpoint of nino_train (`<out_dir>/checkpoint.pt`): a torch.save file that
// Python's torch.load reads, holding everything an exact resume needs.
//
//   {"format": "nino_train/1", "task": str, "seed": int, "step": int,
//    "model": OrderedDict name -> tensor (parameters, then buffers),
//    "optimizer": {param name: {"step": int, "exp_avg": T, "exp_avg_sq": T}} (AdamW; {} for SGD),
//    "nino": {"step_idx": int, "history": [T, ...]},
//    "reached_at": int, "best_metric": float, "nino_steps": int, "nino_failures": int}
//
// Loading never trusts the file: a missing entry, or one of the wrong type, is DATA_LOSS naming
// the entry; another format tag (an older or foreign file) is FAILED_PRECONDITION; an unreadable
// or truncated file is the torch.save reader's error (naming the file). Saving goes through
// io::SaveTorchFile and so WriteFileAtomically (common/env/write_file_atomically.h): readers see
// the previous checkpoint or the whole new one, and the new one is durable once OK is returned.
#ifndef NINO_TRAINER_TRAIN_CHECKPOINT_H_
#define NINO_TRAINER_TRAIN_CHECKPOINT_H_

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/env/env.h"
#include "common/io/torch_file.h"

namespace nino::trainer {

inline constexpr char kTrainCheckpointFormat[] = "nino_train/1";

struct TrainCheckpoint {
  std::string task;
  uint64_t seed = 0;
  int64_t step = 0;
  io::NamedTensors model;     // parameters, then buffers
  io::PickleValue optimizer;  // see AdamWStateByName (a dict; empty for SGD)
  int64_t nino_step_idx = 0;  // NowcastOptimizer::step_idx()
  std::vector<torch::Tensor> nino_history;
  int64_t reached_at = -1;
  double best_metric = 0;
  int64_t nino_steps = 0, nino_failures = 0;
};

absl::Status SaveTrainCheckpoint(Env* env, const std::string& path, const TrainCheckpoint& c);
absl::Status SaveTrainCheckpoint(const std::string& path, const TrainCheckpoint& c);  // Default()
absl::StatusOr<TrainCheckpoint> LoadTrainCheckpoint(const std::string& path);

// Model state: parameters then buffers, by name (copies).
io::NamedTensors ModelState(torch::nn::Module& m);
// Copies `saved` into the module. DATA_LOSS naming a missing tensor, FAILED_PRECONDITION for a
// shape that differs from the model's.
absl::Status LoadModelState(torch::nn::Module& m, const io::NamedTensors& saved);

using NamedParamList = std::vector<std::pair<std::string, torch::Tensor>>;
// AdamW's per-parameter state keyed by parameter name (parameters never stepped are absent).
io::PickleValue AdamWStateByName(torch::optim::AdamW& opt, const NamedParamList& params);
// The inverse; DATA_LOSS naming the parameter whose entry is malformed.
absl::Status RestoreAdamWState(torch::optim::AdamW& opt, const io::PickleValue& saved,
                               const NamedParamList& params);

}  // namespace nino::trainer

#endif  // NINO_TRAINER_TRAIN_CHECKPOINT_H_
