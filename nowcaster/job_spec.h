// A validated RegisterJobRequest: what the server knows about a job's model layout.
#ifndef NINO_NOWCASTER_JOB_SPEC_H_
#define NINO_NOWCASTER_JOB_SPEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/nino/neural_graph.h"
#include "common/nino/nino_model.h"
#include "common/nino/nowcast_engine.h"
#include "nino/v1/nowcaster.pb.h"

namespace nino::nowcaster {

struct JobSpec {
  std::string job_id;
  std::string nino_model;         // name of the served checkpoint
  std::vector<ParamSpec> params;  // named_parameters() order, offsets filled
  GraphSpec graph;
  int64_t period = 0;  // steps between NiNo steps
  int64_t ctx = 0;     // snapshots per NiNo step
  int64_t max_train_steps = 0;
  double k_decay = 2.0;
  uint64_t lpe_seed = 0;        // sign seed of the positional encoding
  NowcastTuning tuning;         // edge sampling (seeded with lpe_seed), subgraph, bf16, chunks
  std::vector<int> k_schedule;  // HorizonSchedule(max_train_steps, period, k_decay)
  int64_t num_params = 0;       // P
  int64_t seq_len = 40;         // the model's largest horizon k
  std::string principal;        // who registered the job (auth.h); "" without authentication

  // Bytes of one snapshot on the wire and in memory: P float32 values.
  int64_t state_bytes() const { return num_params * static_cast<int64_t>(sizeof(float)); }
};

// Limits on requests, beyond which RegisterJob answers INVALID_ARGUMENT.
inline constexpr size_t kMaxJobIdBytes = 128;
inline constexpr int64_t kMaxNumParams = int64_t{1} << 36;  // 256 GiB of float32
inline constexpr int64_t kMaxScheduleLength = 100000;

// Checks every field of `request` for a job served by a model with `model_config`, named
// `model_name`. INVALID_ARGUMENT naming the offending field ("params[2].shape[1]", "period",
// ...). Does not build the graph (NowcastEngine::Create does).
absl::StatusOr<JobSpec> ValidateJobRequest(const v1::RegisterJobRequest& request,
                                           absl::string_view model_name,
                                           const NiNoConfig& model_config);

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_JOB_SPEC_H_
