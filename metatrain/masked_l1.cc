#include "metatrain/masked_l1.h"

#include <utility>

namespace nino::metatrain {

torch::Tensor MaskedL1(const torch::Tensor& pred, const torch::Tensor& y,
                       const torch::Tensor& mask) {
  TORCH_CHECK(pred.sizes() == y.sizes() && y.sizes() == mask.sizes(),
              "MaskedL1: shapes differ: pred ", pred.sizes(), ", y ", y.sizes(), ", mask ",
              mask.sizes());
  const torch::Tensor m = mask.to(pred.dtype());
  return ((pred - y).abs() * m).sum() / m.sum().clamp_min(1);
}

std::pair<double, double> MaskedL1Sums(const torch::Tensor& pred, const torch::Tensor& y,
                                       const torch::Tensor& mask) {
  torch::NoGradGuard no_grad;
  const torch::Tensor m = mask.to(torch::kFloat64);
  const double sum =
      ((pred.to(torch::kFloat64) - y.to(torch::kFloat64)).abs() * m).sum().item<double>();
  return {sum, m.sum().item<double>()};
}

}  // namespace nino::metatrain
