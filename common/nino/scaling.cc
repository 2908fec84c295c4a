#include "common/nino/scaling.h"

namespace nino {

ScaledStates ScaleStates(const torch::Tensor& states, const std::vector<ParamSpec>& params) {
  TORCH_CHECK(states.dim() == 2, "states must be [C, P], got ", states.sizes());
  TORCH_CHECK(states.size(1) == TotalParams(params), "states have ", states.size(1),
              " parameters per snapshot, the parameter table has ", TotalParams(params));
  torch::NoGradGuard no_grad;
  const int64_t T = static_cast<int64_t>(params.size());
  // [P, C]: the official code scales the stacked (P, C) matrix row block by row block.
  torch::Tensor pc = states.to(torch::kFloat32).t().contiguous();
  ScaledStates out;
  out.scaled = torch::empty_like(pc);
  out.mu = torch::empty({T}, torch::kFloat32);
  out.sigma = torch::empty({T}, torch::kFloat32);
  auto mu_a = out.mu.accessor<float, 1>();
  auto sigma_a = out.sigma.accessor<float, 1>();
  for (int64_t t = 0; t < T; ++t) {
    const ParamSpec& p = params[t];
    torch::Tensor block = pc.narrow(0, p.offset, p.numel);
    torch::Tensor mu = block.mean();
    torch::Tensor sigma = block.std(/*unbiased=*/true);
    out.scaled.narrow(0, p.offset, p.numel).copy_((block - mu) / (sigma + kScaleEps));
    mu_a[t] = mu.item<float>();
    sigma_a[t] = sigma.item<float>();
  }
  return out;
}

torch::Tensor UnscaleFlat(const torch::Tensor& y_flat, const ScaledStates& s,
                          const std::vector<ParamSpec>& params) {
  torch::NoGradGuard no_grad;
  torch::Tensor out = torch::empty_like(y_flat);
  auto mu_a = s.mu.accessor<float, 1>();
  auto sigma_a = s.sigma.accessor<float, 1>();
  for (size_t t = 0; t < params.size(); ++t) {
    const ParamSpec& p = params[t];
    torch::Tensor y = y_flat.narrow(0, p.offset, p.numel);
    out.narrow(0, p.offset, p.numel).copy_(y * sigma_a[t] + mu_a[t]);
  }
  return out;
}

}  // namespace nino
