#include "metatrain/test_trajectories.h"

#include <cmath>

#include "trainer/trajectory.h"

namespace nino::metatrain::testing {

torch::Tensor TrajectoryRow(uint64_t seed, int64_t row, int64_t num_params) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const auto opts = torch::TensorOptions().dtype(torch::kFloat32);
  const torch::Tensor offset = at::normal(0.0, 0.5, {num_params}, gen, opts);
  const torch::Tensor slope = at::normal(0.0, 0.05, {num_params}, gen, opts);
  at::Generator noise = at::detail::createCPUGenerator(seed * 100003 + row);
  return offset + slope * std::sqrt(static_cast<double>(row)) +
         at::normal(0.0, 0.001, {num_params}, noise, opts);
}

int64_t WriteTestTrajectory(const std::string& dir, uint64_t seed, int64_t rows) {
  trainer::TrajectoryInfo info;
  info.task = "mlp-test";
  info.seed = seed;
  info.lr = 1e-3;
  info.optimizer = "adam";
  info.max_steps = rows * 4;
  info.every = 4;
  info.params = {
      {"fc.0.weight", {5, 6}}, {"fc.0.bias", {5}}, {"fc.2.weight", {4, 5}}, {"fc.2.bias", {4}}};
  const int64_t P = 30 + 5 + 20 + 4;
  auto writer = trainer::TrajectoryWriter::Open(dir, info, -1);
  TORCH_CHECK(writer.ok(), writer.status().ToString());
  for (int64_t r = 0; r < rows; ++r) {
    TORCH_CHECK((*writer)->Append(r * 4, TrajectoryRow(seed, r, P)).ok());
  }
  TORCH_CHECK((*writer)->Finish({{"final_acc", 0}}).ok());
  return P;
}

}  // namespace nino::metatrain::testing
