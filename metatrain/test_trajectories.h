// Small synthetic trajectory datasets for the metatrain tests (testonly): an MLP 6-5-4 layout
// (P = 59) whose parameters drift smoothly, recorded every 4 steps like the vision tasks.
#ifndef NINO_METATRAIN_TEST_TRAJECTORIES_H_
#define NINO_METATRAIN_TEST_TRAJECTORIES_H_

#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace nino::metatrain::testing {

// The value of the flat parameters at `row` of trajectory `seed` ([P] float32): a per-parameter
// offset + a per-parameter slope times sqrt(row) + small noise, exactly representable enough
// in float16 for the tests' tolerances.
torch::Tensor TrajectoryRow(uint64_t seed, int64_t row, int64_t num_params);

// Writes a complete dataset with `rows` rows (every 4 steps) into `dir`; returns P.
int64_t WriteTestTrajectory(const std::string& dir, uint64_t seed, int64_t rows);

}  // namespace nino::metatrain::testing

#endif  // NINO_METATRAIN_TEST_TRAJECTORIES_H_
