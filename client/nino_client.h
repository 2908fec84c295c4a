// The NiNo client library: NiNo steps for any LibTorch training loop, through a nino_nowcaster
// service (or any other Nowcaster), single process or data-parallel.
//
//   #include "client/nino_client.h"
//   torch::optim::Adam adam(model->parameters(), 1e-3);
//   nino::client::NowcastOptimizerOptions o;
//   o.nowcaster = "127.0.0.1:50051";             // rank 0 talks to it
//   o.max_train_steps = 10000;                    // sets NiNo's horizon schedule
//   auto nino = nino::client::NowcastOptimizer::Create(
//       &adam, nino::client::NamedParameters(*model), o,
//       nino::client::WrapProcessGroup(pg));      // pg: null for one process
//   for (int64_t step = 0; step < steps; ++step) {
//     adam.zero_grad();
//     if ((*nino)->need_grads()) { loss(batch).backward(); /* allreduce the grads if DDP */ }
//     (*nino)->step();                            // an Adam step, or a NiNo step
//   }
//
// What step() does (the official optim/nino.py schedule, NINO_SPEC.md 5.2): every period/ctx
// calls the current parameters are recorded (before that call's update); rank 0 copies the
// snapshot and a background thread streams it to the nowcaster while training goes on. At the
// ctx-th record the call is a NiNo step instead of an optimizer step: the data-parallel
// transaction of client/nowcast_transaction.h (rank 0 fetches and validates the prediction, all
// ranks agree through an allreduce of an accept flag, rank 0 broadcasts, every rank applies).
// Any failure (nowcaster down, slow past `nowcast_timeout`, restarted, a bad prediction, ...)
// makes that call an ordinary optimizer step on every rank, logged (unless quiet) and counted in
// stats(); training never stops for the nowcaster. The base optimizer's state is left as it is.
//
// Every rank must call need_grads()/step() in the same order (they are collective at NiNo steps
// in a data-parallel job). Not thread-safe: use from the training thread. `base`, the parameters
// and the Collectives' process group must outlive the NowcastOptimizer.
#ifndef NINO_CLIENT_NINO_CLIENT_H_
#define NINO_CLIENT_NINO_CLIENT_H_

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/collectives.h"
#include "client/nowcast_transaction.h"
#include "client/remote_nowcaster.h"
#include "common/nino/neural_graph.h"
#include "common/nino/nino_optimizer.h"
#include "common/nino/nowcast_engine.h"

namespace nino::client {

// A model's parameters with their names, in named_parameters() order (the order the
// nowcaster's neural graph is built for).
using NamedParams = std::vector<std::pair<std::string, torch::Tensor>>;
NamedParams NamedParameters(const torch::nn::Module& module);

struct NowcastOptimizerOptions {
  // "host:port" of a nino_nowcaster, or several comma-separated replicas (the job is placed by
  // rendezvous hashing and fails over, see remote_nowcaster.h). Create() only; rank 0 uses it.
  std::string nowcaster;
  std::string job_id;            // empty: MakeJobId(job_name, lpe_seed)
  std::string job_name = "job";  // prefix of the generated job id
  std::string nino_model;        // a model the server serves; empty: its default
  // How neurons become a graph; kAuto: inferred by the server from the parameter names.
  // kDescribed with `description` (a ModelDescriptionBuilder's, docs/GRAPH_DESCRIPTION.md): the
  // graph of any model the description covers (e.g. a CNN with pooling, flatten and linear
  // layers, or residual blocks); the server checks it against the parameters at registration.
  GraphSpec graph = {GraphSpec::Kind::kAuto, 0, 0};
  int64_t period = 1000;            // steps between NiNo steps
  int64_t ctx = 5;                  // snapshots per NiNo step (period/ctx steps apart)
  int64_t max_train_steps = 10000;  // the run's length: sets the horizon schedule
  double k_decay = 2.0;             // exponent of the horizon schedule
  uint64_t lpe_seed = 0;            // positional-encoding sign seed (in-process runs use the seed)
  NowcastTuning tuning;             // edge sampling, subgraph, bf16 edge state, chunk memory
  absl::Duration nowcast_timeout = absl::Seconds(60);  // one NiNo step, uploads included
  absl::Duration rpc_timeout = absl::Seconds(30);      // registration, background uploads
  bool quiet = false;                                  // no log lines (failures are still counted)
  // TLS / mutual TLS and the bearer token file (remote_nowcaster_credentials.h); Create()
  // reads the files and fails with INVALID_ARGUMENT for a bad one. Default: plaintext.
  NowcasterCredentials credentials;

  // A step-size search along the nowcast (empty: off, the official behaviour: the prediction is
  // applied as it is). After a prediction is applied, the parameters become
  // before + s * (prediction - before) for the s in `step_search` with the lowest probe_loss()
  // (ties: the first listed); s = 0 keeps the parameters as they were. Every rank evaluates
  // probe_loss and rank 0's choice is broadcast, so all ranks apply the same s: give every rank
  // the same fixed held-out batch. Values must be finite and >= 0, at most 8 of them.
  std::vector<double> step_search;
  std::function<double()> probe_loss;  // required with step_search; called without gradients
  // After an applied prediction, clear the base optimizer's state (Adam: both moments and the
  // step count, so it restarts with bias correction). Off: the state is kept (official).
  bool reset_base_state = false;
  // After an applied prediction, zero only the base optimizer's first moment (Adam/AdamW
  // `exp_avg`, SGD's momentum buffer) and keep its second moment and step count: the pre-jump
  // direction is dropped, and since Adam's bias correction is ~1 by then, the first updates after
  // the jump start at (1 - beta1) of their size and grow back over ~1/(1 - beta1) steps (a
  // short warm-up). Adam, AdamW or SGD only; exclusive with reset_base_state.
  bool reset_momentum = false;
};

class NowcastOptimizer {
 public:
  // NiNo steps on the nino_nowcaster at options.nowcaster (rank 0 of `collectives`, or the only
  // process when it is null). INVALID_ARGUMENT, naming the option, for a null base, no or
  // undefined or non-floating parameters, duplicate names, an empty address, period not a
  // positive multiple of ctx, max_train_steps <= 0, k_decay <= 0, a non-positive timeout, a
  // described graph without a description, or a bad tuning. Nothing is contacted here: the job
  // registers at the first upload.
  static absl::StatusOr<std::unique_ptr<NowcastOptimizer>> Create(
      torch::optim::Optimizer* base, NamedParams params, NowcastOptimizerOptions options,
      std::unique_ptr<Collectives> collectives = nullptr);

  // The same with any Nowcaster on rank 0 (e.g. an InProcessNowcaster); other ranks pass null.
  // options.nowcaster, job_*, nino_model, graph, tuning and the timeouts are not used.
  static absl::StatusOr<std::unique_ptr<NowcastOptimizer>> CreateWithNowcaster(
      torch::optim::Optimizer* base, NamedParams params, NowcastOptimizerOptions options,
      std::shared_ptr<Nowcaster> rank0_nowcaster,
      std::unique_ptr<Collectives> collectives = nullptr);

  ~NowcastOptimizer();
  NowcastOptimizer(const NowcastOptimizer&) = delete;
  NowcastOptimizer& operator=(const NowcastOptimizer&) = delete;

  // False when the next step() is a NiNo step: no gradients needed (skip forward/backward).
  bool need_grads() const { return opt_->need_grads(); }
  // One training iteration's update (see the file comment).
  NinoStepOutcome step();

  // Checkpointing: the call counter and the recorded snapshots (each [P] float32 CPU). A run
  // restored with Restore() on a fresh NowcastOptimizer continues exactly.
  int64_t step_idx() const { return opt_->step_idx(); }
  const std::vector<torch::Tensor>& history() const { return opt_->history(); }
  absl::Status Restore(int64_t step_idx, std::vector<torch::Tensor> history);

  // Flat float32 copy of the parameters [P].
  torch::Tensor FlatParams() const { return opt_->FlatParams(); }
  int64_t num_params() const { return num_params_; }
  int rank() const { return collectives_ ? collectives_->rank() : 0; }

  struct Stats {
    int64_t nino_steps = 0;         // NiNo steps taken (applied or not)
    int64_t applied = 0;            // predictions applied
    int64_t fallbacks = 0;          // NiNo steps that became ordinary optimizer steps
    double last_step_scale = 1;     // step_search: the scale chosen at the last applied step
    RemoteNowcaster::Stats remote;  // rank 0 with a remote nowcaster; zeros elsewhere
  };
  Stats stats() const;
  // Rank 0 of a remote client: waits until the snapshots recorded so far are uploaded (e.g.
  // before measuring, or before a planned shutdown); false after `timeout`. True elsewhere.
  bool WaitForUploads(absl::Duration timeout) {
    return remote_ ? remote_->WaitForUploads(timeout) : true;
  }
  // The job's id on the nowcaster (rank 0 of a remote client), else "".
  std::string job_id() const { return remote_ ? remote_->job_id() : std::string(); }

 private:
  NowcastOptimizer(torch::optim::Optimizer* base, NamedParams params,
                   NowcastOptimizerOptions options, std::shared_ptr<Nowcaster> rank0,
                   std::shared_ptr<RemoteNowcaster> remote,
                   std::unique_ptr<Collectives> collectives);
  void Log(const std::string& line) const;
  // step_search: moves the parameters from their applied prediction to the best scale along
  // (prediction - before); returns the scale, or an error (then the prediction stays applied).
  absl::StatusOr<double> SearchStepScale(const torch::Tensor& before);

  const NowcastOptimizerOptions options_;
  torch::optim::Optimizer* base_;
  NamedParams params_;
  int64_t num_params_ = 0;
  std::unique_ptr<Collectives> collectives_;
  std::shared_ptr<RemoteNowcaster> remote_;  // rank 0, remote mode
  std::unique_ptr<NinoOptimizer> opt_;
  Stats stats_;
};

}  // namespace nino::client

#endif  // NINO_CLIENT_NINO_CLIENT_H_
