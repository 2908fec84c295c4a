// The data-parallel training loop with NiNo in the loop (in-process) and exact resume.
#ifndef NINO_TRAINER_TRAINER_H_
#define NINO_TRAINER_TRAINER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/nino/nowcast_engine.h"

namespace nino::trainer {

struct TrainOptions {
  std::string task = "fm16";
  int64_t steps = 10000;          // max_train_steps (also sets NiNo's horizon schedule)
  uint64_t seed = 1000;
  double lr = 0;                  // 0: the task's default
  std::string optimizer = "adamw";  // adamw (weight decay 0 = Adam) or sgd (plain, no momentum)
  int64_t batch = 0;              // global batch; 0: the task's default
  std::string nino_ckpt;          // empty or "none": plain Adam
  std::string nowcaster;          // host:port of nino_nowcaster: NiNo steps run there (rank 0 asks)
  int64_t nowcaster_timeout_ms = 60000;  // bound on one remote NiNo step (uploads + Predict)
  std::string nino_model = "nino_no_posw";  // the checkpoint the nowcaster runs for this job
  int64_t period = 1000;
  int64_t ctx = 5;
  double k_decay = 2.0;
  NowcastTuning nino_tuning;      // edge sampling, subgraph mode, bf16 edge state, chunks
  int64_t eval_every = 50;        // 0: evaluate only at the end
  int64_t log_every = 100;
  std::string out_dir;            // metrics.jsonl, checkpoint.pt, summary.json
  int64_t checkpoint_every = 1000;  // 0: only at the end
  bool resume = true;             // continue from out_dir/checkpoint.pt when it exists
  bool stop_at_target = true;
  int threads = 0;                // 0: cores / local world size
  std::string data_dir;           // FashionMNIST folder (empty: default)
  std::string text_cache;         // lm: KJV text cache file
  int64_t eval_limit = 0;         // >0: evaluate on a prefix of the evaluation set
  int64_t crash_at_step = -1;     // test hook: exit abruptly (no checkpoint) after this step
  bool quiet = false;
};

struct TrainSummary {
  int64_t steps_done = 0;
  int64_t reached_at = -1;        // first evaluated step whose metric met the target, or -1
  double final_metric = 0;
  double best_metric = 0;
  double seconds = 0;
  double steps_per_second = 0;   // training steps per second, evaluation excluded
  double eval_seconds = 0;
  double cpu_steps_per_second = 0;  // per second of process CPU time (robust to a busy machine)
  int64_t nino_steps = 0, nino_failures = 0;
  std::string params_sha256;      // of the final flat float32 parameters (for exactness checks)
};

// Runs training as one worker of a torchrun-style job (RANK, WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT, LOCAL_RANK from the environment; a single process without them). Every input is
// validated before any training step: a bad option, a missing dataset or an unreadable NiNo
// checkpoint is an error naming the problem.
absl::StatusOr<TrainSummary> RunTraining(const TrainOptions& options);

}  // namespace nino::trainer

#endif  // NINO_TRAINER_TRAINER_H_
