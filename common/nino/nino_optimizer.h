// NiNo in the training loop: wraps any torch::optim::Optimizer the way the official
// optim/nino.py wraps a PyTorch optimizer (shared/spec/NINO_SPEC.md section 5.2).
//
// Every period/ctx steps the current parameters (before that step's update) are appended to a
// history; when it holds ctx states, the step is a NiNo step instead of an optimizer step: the
// Nowcaster predicts parameters k states ahead (k from the horizon schedule), they replace the
// parameters, and the history is cleared. The base optimizer's state (Adam moments) is left as
// it is. A failed nowcast never loses the run: the parameters stay, the base optimizer steps
// instead, and the failure is reported in the outcome.
#ifndef NINO_COMMON_NINO_NINO_OPTIMIZER_H_
#define NINO_COMMON_NINO_NINO_OPTIMIZER_H_

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/nino/nowcast_engine.h"

namespace nino {

// Anything that turns ctx parameter snapshots into a prediction: the in-process engine here, a
// remote nowcaster service elsewhere.
class Nowcaster {
 public:
  virtual ~Nowcaster() = default;
  // states: [ctx, P] float32 CPU, oldest first. Returns the predicted parameters [P].
  virtual absl::StatusOr<torch::Tensor> Nowcast(const torch::Tensor& states, int k) = 0;
};

class InProcessNowcaster : public Nowcaster {
 public:
  explicit InProcessNowcaster(std::shared_ptr<NowcastEngine> engine) : engine_(std::move(engine)) {}
  absl::StatusOr<torch::Tensor> Nowcast(const torch::Tensor& states, int k) override {
    return engine_->Nowcast(states, k);
  }
  const NowcastEngine& engine() const { return *engine_; }

 private:
  std::shared_ptr<NowcastEngine> engine_;
};

struct NinoOptimizerOptions {
  int64_t period = 1000;            // steps between NiNo steps
  int64_t ctx = 5;                  // states per NiNo step (period/ctx apart)
  int64_t max_train_steps = 10000;  // sets the horizon schedule
  double k_decay = 2.0;             // p of the schedule
  int seq_len = 40;
};

struct NinoStepOutcome {
  int64_t step_idx = 0;         // index of this call (0-based)
  bool state_recorded = false;  // a snapshot was appended in this call
  bool nino_step = false;       // this call was a NiNo step
  bool applied = false;         // the prediction replaced the parameters
  int k = 0;
  double nowcast_seconds = 0;
  absl::Status status;  // why a NiNo step was not applied
};

class NinoOptimizer {
 public:
  // `base` and `params` must outlive this object. `params` are the model's parameters in
  // named_parameters order (the order the nowcaster's graph was built for).
  NinoOptimizer(torch::optim::Optimizer* base, std::vector<torch::Tensor> params,
                std::shared_ptr<Nowcaster> nowcaster, NinoOptimizerOptions options = {});

  // False when the next step() will be a NiNo step (gradients are not needed then).
  bool need_grads() const;
  // True when the next step() will record a snapshot or nowcast.
  int64_t ctx_interval() const { return ctx_interval_; }

  // Call once per training iteration, after backward() when need_grads().
  NinoStepOutcome step();

  // Flat copy of the current parameters [P] float32 CPU.
  torch::Tensor FlatParams() const;
  // Writes a flat vector [P] into the parameters. INVALID_ARGUMENT on a size mismatch.
  absl::Status SetFlatParams(const torch::Tensor& flat);

  // For checkpoint/resume: the call counter and the recorded states (each [P]; rows of one
  // reused [ctx, P] buffer, so they are overwritten in the next period: copy what you keep).
  int64_t step_idx() const { return step_idx_; }
  const std::vector<torch::Tensor>& history() const { return history_; }
  absl::Status Restore(int64_t step_idx, std::vector<torch::Tensor> history);
  const std::vector<int>& schedule() const { return schedule_; }
  const NinoOptimizerOptions& options() const { return options_; }

 private:
  torch::optim::Optimizer* base_;
  std::vector<torch::Tensor> params_;
  std::shared_ptr<Nowcaster> nowcaster_;
  NinoOptimizerOptions options_;
  int64_t ctx_interval_;
  std::vector<int> schedule_;
  int64_t step_idx_ = 0;
  int64_t num_params_ = 0;
  std::vector<torch::Tensor> history_;  // rows of context_
  // The recorded states live in one [ctx, P] buffer, reused every period: a NiNo step hands it
  // to the nowcaster without stacking (ctx x P floats of fresh memory per step otherwise).
  torch::Tensor context_;
  torch::Tensor ContextRow(int64_t i);
  // Copies the current flat parameters into row i and returns it.
  torch::Tensor RecordRow(int64_t i);
};

}  // namespace nino

#endif  // NINO_COMMON_NINO_NINO_OPTIMIZER_H_
