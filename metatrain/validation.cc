#include "metatrain/validation.h"

#include "metatrain/batch_forward.h"

namespace nino::metatrain {

ValidationResult Validate(const TrainableNiNo& model, const TrajectoryWindows& data,
                          const std::vector<SliceRef>& slices, const torch::Device& device) {
  torch::NoGradGuard no_grad;
  const int64_t T = model.config().seq_len, C = model.config().ctx;
  ValidationResult r;
  torch::Tensor per_h = torch::zeros({T}, torch::kFloat64);
  torch::Tensor per_h_count = torch::zeros({T}, torch::kFloat64);
  double sum = 0, sum_nc = 0;
  for (const auto& slice : slices) {
    for (const auto& w : data.Windows(slice)) {
      const GraphSample s = w.To(device);
      const BatchPrediction p = PredictBatch(model, s);
      const torch::Tensor m = p.mask.to(torch::kFloat64);
      const torch::Tensor err = (p.pred.to(torch::kFloat64) - p.y.to(torch::kFloat64)).abs() * m;
      sum += err.sum().item<double>();
      r.count += m.sum().item<double>();
      const int64_t Fs = s.feat_size(C);
      const torch::Tensor last = s.x.view({s.num_edges(), Fs, C}).select(2, C - 1).unsqueeze(2);
      sum_nc += ((last.to(torch::kFloat64) - s.y.to(torch::kFloat64)).abs() *
                 s.y_mask.to(torch::kFloat64))
                    .sum()
                    .item<double>();
      per_h += err.reshape({-1, T}).sum(0).cpu();
      per_h_count += m.reshape({-1, T}).sum(0).cpu();
      ++r.windows;
    }
  }
  r.l1 = sum / std::max(r.count, 1.0);
  r.l1_no_change = sum_nc / std::max(r.count, 1.0);
  torch::Tensor ph = per_h / per_h_count.clamp_min(1);
  for (int64_t k = 0; k < T; ++k) r.l1_per_horizon.push_back(ph[k].item<double>());
  return r;
}

}  // namespace nino::metatrain
