// Small synthetic trajectory datasets for the metatrain tests (testonly), written through the
// trainer's TrajectoryWriter: an MLP 6-5-4 layout (P = 59) whose parameters drift smoothly,
// recorded every 4 steps like the vision tasks; and a tiny GPT-2 layout (HF names, as nino_train
// --task=lm records it) recorded every 200 steps like the LM task.
#ifndef NINO_METATRAIN_TEST_TRAJECTORIES_H_
#define NINO_METATRAIN_TEST_TRAJECTORIES_H_

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "common/nino/neural_graph.h"

namespace nino::metatrain::testing {

// The value of the flat parameters at `row` of trajectory `seed` ([P] float32): a per-parameter
// offset + a per-parameter slope times sqrt(row) + small noise, exactly representable enough
// in float16 for the tests' tolerances.
torch::Tensor TrajectoryRow(uint64_t seed, int64_t row, int64_t num_params);

// Writes a complete dataset with `rows` rows (every 4 steps) into `dir`; returns P.
int64_t WriteTestTrajectory(const std::string& dir, uint64_t seed, int64_t rows);

// The same for a small CNN with k x k kernels (conv 1->3, conv 3->4, GAP, linear 4->2; k*k
// feature slots per edge), as nino_train --kernel_size records FM-16. Returns P.
int64_t WriteConvTestTrajectory(const std::string& dir, uint64_t seed, int64_t rows, int64_t k);

// A GPT-2 layout in named_parameters() order (transformer.wte first, tied lm_head).
struct Gpt2TestShape {
  int64_t vocab = 40, dim = 8, heads = 2, layers = 1, positions = 8;
};
std::vector<std::pair<std::string, std::vector<int64_t>>> Gpt2NamedShapes(const Gpt2TestShape& s);

// Row `row` of a dataset: [P] float32.
using RowFunction = std::function<torch::Tensor(int64_t row, int64_t num_params)>;

// Writes a complete GPT-2 dataset (every 200 steps, graph "auto" with the head count, as the
// trainer's LM task) with `rows` rows; values from `values` (default: TrajectoryRow(seed, ...)).
// Returns P.
int64_t WriteGpt2TestTrajectory(const std::string& dir, uint64_t seed, int64_t rows,
                                const Gpt2TestShape& shape, const RowFunction& values = {});
// The same for any layout and graph spec (e.g. LlamaNamedShapes with kind llama).
int64_t WriteLmTestTrajectory(const std::string& dir, uint64_t seed, int64_t rows,
                              std::vector<std::pair<std::string, std::vector<int64_t>>> named,
                              const GraphSpec& graph, const RowFunction& values = {});

}  // namespace nino::metatrain::testing

#endif  // NINO_METATRAIN_TEST_TRAJECTORIES_H_
