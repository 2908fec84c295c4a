// The meta-training loss (shared/spec/META_TRAINING.md section 4): L1 between predicted and
// true future parameters in scaled space, averaged over the valid (y_mask = 1) entries; all
// (edge, slot, horizon) entries count equally.
#ifndef NINO_METATRAIN_MASKED_L1_H_
#define NINO_METATRAIN_MASKED_L1_H_

#include <torch/torch.h>

namespace nino::metatrain {

// pred, y, mask: same shape. Returns a scalar: sum(|pred - y| * mask) / max(sum(mask), 1).
torch::Tensor MaskedL1(const torch::Tensor& pred, const torch::Tensor& y,
                       const torch::Tensor& mask);

// Sum of |pred - y| over valid entries and their count, in float64 (for averaging many
// validation windows exactly): {sum, count}.
std::pair<double, double> MaskedL1Sums(const torch::Tensor& pred, const torch::Tensor& y,
                                       const torch::Tensor& mask);

}  // namespace nino::metatrain

#endif  // NINO_METATRAIN_MASKED_L1_H_
