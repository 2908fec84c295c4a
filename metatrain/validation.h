// Validation loss of a NiNo on fixed windows: the training loss (masked L1 in scaled space over
// all valid entries, shared/spec/META_TRAINING.md section 4), accumulated in float64 over every
// window and divided once by the total count (a micro-average), plus the same for the "no
// change" prediction (every horizon = the last input state), which any useful NiNo must beat.
#ifndef NINO_METATRAIN_VALIDATION_H_
#define NINO_METATRAIN_VALIDATION_H_

#include <torch/torch.h>

#include <vector>

#include "metatrain/trainable_nino.h"
#include "metatrain/trajectory_windows.h"

namespace nino::metatrain {

struct ValidationResult {
  double l1 = 0;            // the model's masked L1
  double l1_no_change = 0;  // predicting the last input state for every horizon
  double count = 0;         // valid entries
  int64_t windows = 0;
  std::vector<double> l1_per_horizon;  // [seq_len]
};

// Runs in eval mode without gradients, one window at a time, on `device`.
ValidationResult Validate(const TrainableNiNo& model, const TrajectoryWindows& data,
                          const std::vector<SliceRef>& slices, const torch::Device& device);

}  // namespace nino::metatrain

#endif  // NINO_METATRAIN_VALIDATION_H_
