// RunTraining: one worker of nino_train's data-parallel training with NiNo steps (in process or
// on a nowcaster, through the client library) and exact resume.
#ifndef NINO_TRAINER_TRAINER_H_
#define NINO_TRAINER_TRAINER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/env/env.h"
#include "trainer/train_options.h"

namespace nino::trainer {

struct TrainSummary {
  int64_t steps_done = 0;
  int64_t reached_at = -1;  // first evaluated step whose metric met the target, or -1
  double final_metric = 0;
  double best_metric = 0;
  double seconds = 0;
  double steps_per_second = 0;  // training steps per second, evaluation excluded
  double eval_seconds = 0;
  double cpu_steps_per_second = 0;  // per second of process CPU time (robust to a busy machine)
  int64_t nino_steps = 0, nino_failures = 0;
  std::string params_sha256;  // of the final flat float32 parameters (for exactness checks)
};

// Runs training as one worker of a torchrun-style job (RANK, WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT, LOCAL_RANK from the environment; a single process without them). Every input is
// validated before any training step: a bad option, a missing dataset, an unreadable NiNo
// checkpoint or a damaged training checkpoint is an error naming the problem.
// Writes <out_dir>/metrics.jsonl, checkpoint.pt (train_checkpoint.h), summary.json and
// rank<r>.params.sha256, all through `env` (common/env/env.h), which also times the run.
// Durability: checkpoint.pt, summary.json, the hash files and the trajectory manifest are
// replaced with WriteFileAtomically; metrics.jsonl lines and trajectory rows are fsynced before
// each checkpoint. A failed write is returned as an error (never a crash) and leaves the previous
// checkpoint loadable, so a rerun with resume continues from it.
absl::StatusOr<TrainSummary> RunTraining(const TrainOptions& options, Env* env);
absl::StatusOr<TrainSummary> RunTraining(const TrainOptions& options);  // Env::Default()

}  // namespace nino::trainer

#endif  // NINO_TRAINER_TRAINER_H_
