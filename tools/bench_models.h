// The models the benchmarks nowcast, by name: their parameter layout (names and shapes in
// named_parameters() order), the graph NiNo sees, their initial parameters, and a smooth
// 5-state trajectory that stands in for the snapshots of a training run.
//
//   fm16        FashionMNIST CNN 16-32-32 (the official FM-16 Net)           14,378 params
//   fm32        FashionMNIST CNN 32-64-64                                     56,394
//   mlp512      MLP 784-512-512-512-10 (the official code's MLP benchmark)     932,362
//   lm          our byte-level GPT-2 3 layers / d 64 / 4 heads / ctx 128       174,656
//   gpt2-3-64   GPT-2 3/64/4 with the GPT-2 vocabulary (50257) and ctx 1024    3.43M
//   gpt2-4-128  GPT-2 4/128/4, vocabulary 50257, ctx 1024                      7.36M
//   llama-tiny  Llama 4 layers / d 128 / 4 heads / 2 KV heads / SwiGLU 344,      2.82M
//               vocabulary 8192, untied lm_head (a CPU-sized Llama; the official
//               "Llama3-tiny" is 6/384/6/2 with the 128k Llama-3 vocabulary, ~111M)
#ifndef NINO_TOOLS_BENCH_MODELS_H_
#define NINO_TOOLS_BENCH_MODELS_H_

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/nino/neural_graph.h"

namespace nino::bench {

struct BenchModel {
  std::string name;
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  GraphSpec graph;
  torch::Tensor init;  // [P] float32: the model's initial parameters, flattened in order
};

std::vector<std::string> BenchModelNames();
// INVALID_ARGUMENT naming the known models for an unknown name.
absl::StatusOr<BenchModel> MakeBenchModel(const std::string& name, uint64_t seed);

// [5, P]: theta_s = theta_{s-1} + sigma_t (0.05 D + 0.02 E_s) from the initial parameters, with
// sigma_t the per-tensor std of the initialisation (at least 0.01), as the golden cases.
torch::Tensor SmoothTrajectory(const std::vector<ParamSpec>& table, const torch::Tensor& init,
                               uint64_t seed);

// Peak resident set of this process so far, GiB.
double PeakRssGiB();
// Process CPU time, seconds.
double ProcessCpuSeconds();
// Wall seconds since t0.
double SecondsSince(std::chrono::steady_clock::time_point t0);
// Median of the values (0 for none).
double Median(std::vector<double> values);
// Prints "error: <what>: <status>" to stderr and returns 1 (a benchmark's exit status).
int Fail(const std::string& what, const absl::Status& status);

}  // namespace nino::bench

#endif  // NINO_TOOLS_BENCH_MODELS_H_
