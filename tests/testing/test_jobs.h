// Part of the test library (tests/testing): the model layouts, registrations and snapshot
// trajectories that the service and client tests share.
#ifndef NINO_TESTS_TESTING_TEST_JOBS_H_
#define NINO_TESTS_TESTING_TEST_JOBS_H_

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "nino/v1/nowcaster.pb.h"

namespace nino::testing {

// Parameter names and shapes in named_parameters() order.
using Layout = std::vector<std::pair<std::string, std::vector<int64_t>>>;

// The FM-16 CNN of the official examples (14,378 parameters).
const Layout& Fm16Layout();
inline constexpr int64_t kFm16Params = 14378;

// RegisterJob for `layout`: float32 parameters, the generic graph, ctx 5.
v1::RegisterJobRequest RegisterRequest(const std::string& job_id, const Layout& layout,
                                       const std::string& nino_model, int64_t period,
                                       int64_t max_train_steps);

// `ctx` snapshots [ctx, num_params] of a straight trajectory, seeded: row i = start + i * dir,
// start ~ 0.1 N(0, 1), dir ~ 0.01 N(0, 1) (the input of a NiNo step). Reseeds LibTorch's
// global generator.
torch::Tensor SmoothStates(int64_t num_params, int seed, int ctx = 5);

}  // namespace nino::testing

#endif  // NINO_TESTS_TESTING_TEST_JOBS_H_
