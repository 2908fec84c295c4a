// Per-tensor scaling of the 5 context states (shared/spec/NINO_SPEC.md section 4, method "std").
#ifndef NINO_COMMON_NINO_SCALING_H_
#define NINO_COMMON_NINO_SCALING_H_

#include <torch/torch.h>

#include <vector>

#include "common/nino/neural_graph.h"

namespace nino {

inline constexpr double kScaleEps = 1e-6;

struct ScaledStates {
  torch::Tensor scaled;  // [P, C] float32, (v - mu_t) / (sigma_t + 1e-6)
  torch::Tensor mu;      // [T] float32, mean of tensor t over all its |R_t| x C values
  torch::Tensor sigma;   // [T] float32, unbiased std over the same values
};

// `states`: [C, P] float32 (oldest first, as stacked snapshots). Statistics are float32 torch
// reductions over each tensor's rows, exactly like the official code.
ScaledStates ScaleStates(const torch::Tensor& states, const std::vector<ParamSpec>& params);

// y_flat [P] (scaled space) -> parameters: y * sigma_t + mu_t (no epsilon on the way back).
torch::Tensor UnscaleFlat(const torch::Tensor& y_flat, const ScaledStates& s,
                          const std::vector<ParamSpec>& params);

}  // namespace nino

#endif  // NINO_COMMON_NINO_SCALING_H_
