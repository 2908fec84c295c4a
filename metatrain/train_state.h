// nino_metatrain's own checkpoint: everything a resumed run needs to continue exactly
// (model weights, AdamW moments and step counts, the training step, the sampler's RNG state,
// the accumulated wall time, the rollback count) plus the run's configuration as JSON, so that
// a resume with other settings is refused.
//
// Contract: SaveTrainState writes a LibTorch archive to `path` atomically (temporary file in the
// same folder, fsync, rename, fsync of the folder): a crash leaves the previous checkpoint or
// the new one, never a torn file. LoadTrainState restores into an existing model and optimizer
// of the same shapes; DATA_LOSS naming the file when it cannot be read.
#ifndef NINO_METATRAIN_TRAIN_STATE_H_
#define NINO_METATRAIN_TRAIN_STATE_H_

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace nino::metatrain {

struct TrainProgress {
  int64_t step = 0;         // optimizer steps done
  std::string rng;          // std::mt19937_64 state (operator<< text)
  double wall_seconds = 0;  // training wall time before this process
  int64_t rollbacks = 0;    // NaN rollbacks so far
  std::string config_json;  // the run's configuration
};

absl::Status SaveTrainState(const std::string& path, torch::nn::Module& model,
                            torch::optim::Optimizer& optimizer, const TrainProgress& progress);
absl::Status LoadTrainState(const std::string& path, torch::nn::Module& model,
                            torch::optim::Optimizer& optimizer, TrainProgress* progress);

}  // namespace nino::metatrain

#endif  // NINO_METATRAIN_TRAIN_STATE_H_
