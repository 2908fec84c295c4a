// TrainOptions: everything one nino_train worker is told, and its validation.
#ifndef NINO_TRAINER_TRAIN_OPTIONS_H_
#define NINO_TRAINER_TRAIN_OPTIONS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/nino/nowcast_engine.h"

namespace nino::trainer {

struct TrainOptions {
  std::string task = "fm16";
  int64_t steps = 10000;  // max_train_steps (also sets NiNo's horizon schedule)
  uint64_t seed = 1000;
  double lr = 0;                    // 0: the task's default
  std::string optimizer = "adamw";  // adamw (weight decay 0 = Adam) or sgd (plain, no momentum)
  int64_t batch = 0;                // global batch; 0: the task's default
  std::string nino_ckpt;  // in-process model (model_catalog.h); empty or "none": plain Adam
  std::string nowcaster;  // host:port of nino_nowcaster: NiNo steps run there (rank 0 asks)
  int64_t nowcaster_timeout_ms = 60000;  // bound on one remote NiNo step (uploads + Predict)
  std::string nino_model;  // the model the nowcaster runs for this job (empty: its default)
  // --nowcaster security (client/remote_nowcaster_credentials.h): PEM files for TLS / mutual
  // TLS, the certificate name to expect, and a file holding the bearer token.
  std::string nowcaster_tls_ca, nowcaster_tls_cert, nowcaster_tls_key, nowcaster_tls_server_name;
  std::string auth_token_file;
  int64_t period = 1000;
  int64_t ctx = 5;
  double k_decay = 2.0;
  // Step-size search along each nowcast on the task's probe batch (client/nino_client.h);
  // empty: the prediction is applied as it is (official).
  std::vector<double> nino_step_search;
  bool nino_reset_adam = false;      // clear the optimizer's state after each applied NiNo step
  bool nino_reset_momentum = false;  // zero only the first moment after each applied NiNo step
  NowcastTuning nino_tuning;         // edge sampling, subgraph mode, bf16 edge state, chunks
  int64_t eval_every = 50;           // 0: evaluate only at the end
  int64_t log_every = 100;
  std::string out_dir;              // metrics.jsonl, checkpoint.pt, summary.json
  int64_t checkpoint_every = 1000;  // 0: only at the end
  bool resume = true;               // continue from out_dir/checkpoint.pt when it exists
  bool stop_at_target = true;
  int threads = 0;          // 0: cores / local world size
  std::string data_dir;     // FashionMNIST folder (empty: default)
  std::string text_cache;   // lm: KJV text cache file
  int64_t eval_limit = 0;   // >0: evaluate on a prefix of the evaluation set
  int64_t kernel_size = 0;  // fm16 / fm32: conv kernel size (0: the official 3x3)
  bool quiet = false;
  // Trajectory recording for meta-training (trainer/trajectory.h): rank 0 writes the flat
  // parameters every `record_every` steps (0: 4 for the vision tasks, 200 for the LM, as the
  // official dataset) into `record_dir`, which a resumed run continues.
  std::string record_dir;
  int64_t record_every = 0;
  // Called after every training step (its checkpoint, if any, written), with the step count.
  // nino_train's test-only crash hook uses it; the library never exits the process itself.
  std::function<void(int64_t step)> after_step;
};

// INVALID_ARGUMENT naming the flag for a value out of range (steps, lr, batch, period/ctx,
// k_decay, the every-N settings, out_dir, optimizer, threads, the nowcaster timeout).
absl::Status ValidateTrainOptions(const TrainOptions& o);

// True when NiNo steps run (in process with a checkpoint, or on a nowcaster).
bool UsesNino(const TrainOptions& o);

}  // namespace nino::trainer

#endif  // NINO_TRAINER_TRAIN_OPTIONS_H_
