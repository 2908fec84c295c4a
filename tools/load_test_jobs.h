// The synthetic training jobs of the nowcaster load test (tools/load_test.h) and the in-process
// answers their predictions are checked against.
//
// A LoadJob is one training job's worth of NiNo steps: a model layout (FM-16, an MLP, ...), and
// `cases` distinct 5-snapshot contexts, each with its horizon k and the prediction an in-process
// NowcastEngine makes for it with the same NiNo model (the answer the nowcaster must return).
// Every job draws its parameters and trajectories from its own seed, so two jobs never share a
// context, and a prediction delivered to the wrong job (or for the wrong case) does not match.
#ifndef NINO_TOOLS_LOAD_TEST_JOBS_H_
#define NINO_TOOLS_LOAD_TEST_JOBS_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/nino/neural_graph.h"
#include "common/nino/nino_model.h"
#include "common/nino/nowcast_engine.h"

namespace nino::load_test {

struct LoadJob {
  std::string name;  // "<kind>-<index>", e.g. "fm16-3"
  std::string kind;  // a bench model name (tools/bench_models.h) or "mlp<H>" (784-H-H-H-10)
  uint64_t seed = 0;
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;  // named_parameters order
  GraphSpec graph;
  int64_t num_params = 0;
  std::vector<torch::Tensor> contexts;  // per case: [5, P] float32, oldest snapshot first
  std::vector<int> ks;                  // per case: the horizon asked for
  std::vector<torch::Tensor> expected;  // per case: [P] float32, the in-process prediction
  double inprocess_step_s = 0;          // mean time of those in-process NiNo steps
};

// The layout of a job kind: a bench model name, or "mlp<H>" for the MLP 784-H-H-H-10 (the
// official code's MLP benchmark is mlp512). INVALID_ARGUMENT naming the known kinds otherwise.
absl::Status CheckKind(const std::string& kind);

// Builds job `name` of `kind` from `seed`: the layout, `cases` contexts (a smooth trajectory per
// case, each from its own seed), horizons spread over 1..seq_len, and the expected predictions
// of an in-process NowcastEngine with `model` and the default tuning (exactly what the
// nowcaster builds for a job registered with lpe_seed = `seed`). Uses LibTorch's global random
// generator: call from one thread at a time.
absl::StatusOr<LoadJob> MakeLoadJob(const std::string& name, const std::string& kind, uint64_t seed,
                                    int cases, const std::shared_ptr<const NiNoModel>& model);

// How a returned prediction compares with the expected one.
struct Verdict {
  bool bitwise = false;     // every float identical
  double max_abs_diff = 0;  // max |got - expected| (inf for a wrong size)
  bool matches = false;     // max_abs_diff <= tolerance (bitwise when tolerance is 0)
};
Verdict Compare(const torch::Tensor& got, const torch::Tensor& expected, double tolerance);

// For a prediction that did not match its own case: "<job> case <c>" of the job and case among
// `jobs` whose expected prediction it matches within `tolerance` (a prediction crossed between
// jobs or cases), or "" if it matches none (a wrong answer).
std::string FindOwner(const torch::Tensor& got, const std::vector<LoadJob>& jobs, double tolerance);

}  // namespace nino::load_test

#endif  // NINO_TOOLS_LOAD_TEST_JOBS_H_
