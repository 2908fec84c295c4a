#include "trainer/trainer.h"

#include <time.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "client/nino_client.h"
#include "common/env/write_file_atomically.h"
#include "common/io/checkpoint_locator.h"
#include "common/nino/model_catalog.h"
#include "common/nino/nino_optimizer.h"
#include "common/nino/nowcast_engine.h"
#include "trainer/dist/distributed.h"
#include "trainer/distributed_collectives.h"
#include "trainer/metrics_log.h"
#include "trainer/task.h"
#include "trainer/train_checkpoint.h"
#include "trainer/trajectory.h"

namespace nino::trainer {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr char kCheckpointName[] = "checkpoint.pt";

double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

std::string FormatDuration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return absl::StrFormat("%dh%02dm", t / 3600, (t % 3600) / 60);
  if (t >= 60) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  return absl::StrFormat("%ds", t);
}

std::string Sha256OfTensor(const torch::Tensor& t) {
  torch::Tensor c = t.contiguous();
  return io::Sha256Hex(
      std::string(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size()));
}

int ThreadsFor(const TrainOptions& o, const DistEnv& env) {
  if (o.threads > 0) return o.threads;
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  return std::max(1, cores / std::min(std::max(1, env.world_size), 64));
}

// AdamW (weight decay 0 = Adam; for decayed tasks biases and norm gains are not decayed) or SGD.
std::unique_ptr<torch::optim::Optimizer> MakeBaseOptimizer(const TrainOptions& o,
                                                           const TaskInfo& info,
                                                           const NamedParamList& named) {
  const double lr = o.lr > 0 ? o.lr : info.lr;
  std::vector<torch::Tensor> all, decay, no_decay;
  for (const auto& [name, p] : named) {
    all.push_back(p);
    (p.dim() >= 2 ? decay : no_decay).push_back(p);
  }
  if (o.optimizer == "sgd")
    return std::make_unique<torch::optim::SGD>(all, torch::optim::SGDOptions(lr));
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(lr).weight_decay(info.weight_decay)));
  if (!no_decay.empty()) {
    groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                      torch::optim::AdamWOptions(lr).weight_decay(0)));
  }
  return std::make_unique<torch::optim::AdamW>(groups,
                                               torch::optim::AdamWOptions(lr).weight_decay(0));
}

client::NowcastOptimizerOptions ClientOptionsFor(const TrainOptions& o, const TaskInfo& info) {
  client::NowcastOptimizerOptions c;
  c.nowcaster = o.nowcaster;
  c.credentials = {o.nowcaster_tls_ca, o.nowcaster_tls_cert, o.nowcaster_tls_key,
                   o.nowcaster_tls_server_name, o.auth_token_file};
  c.job_name = o.task;
  c.nino_model = o.nino_model;
  c.graph = info.graph;
  c.period = o.period;
  c.ctx = o.ctx;
  c.max_train_steps = o.steps;
  c.k_decay = o.k_decay;
  c.lpe_seed = o.seed;
  c.tuning = o.nino_tuning;
  c.nowcast_timeout = absl::Milliseconds(o.nowcaster_timeout_ms);
  c.rpc_timeout = std::min(absl::Seconds(30), c.nowcast_timeout);
  c.quiet = o.quiet;
  return c;
}

// Rank 0's in-process NiNo engine for the model.
absl::StatusOr<std::shared_ptr<Nowcaster>> MakeInProcessNowcaster(
    const TrainOptions& o, const TaskInfo& info, const NamedParamList& named,
    std::shared_ptr<const NiNoModel> model) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  for (const auto& [n, p] : named) shapes.push_back({n, p.sizes().vec()});
  auto table = MakeParamTable(shapes);
  if (!table.ok()) return table.status();
  NowcastEngineOptions eo;
  eo.lpe.sign_seed = o.seed;
  if (absl::Status t = ApplyTuning(o.nino_tuning, model->config(), &eo); !t.ok()) return t;
  auto engine = NowcastEngine::Create(std::move(model), *table, info.graph, eo);
  if (!engine.ok()) return engine.status();
  return std::shared_ptr<Nowcaster>(
      std::make_shared<InProcessNowcaster>(std::shared_ptr<NowcastEngine>(std::move(*engine))));
}

torch::Tensor FlatParamsOf(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> f;
  for (const auto& p : params)
    f.push_back(p.detach().reshape({-1}).to(torch::kCPU, torch::kFloat32));
  return torch::cat(f);
}

// One worker's run: set up, resume, loop, finish. Each method does one of these.
class TrainingRun {
 public:
  TrainingRun(const TrainOptions& o, DistEnv env, Env* io) : o_(o), env_(std::move(env)), io_(io) {}

  absl::Status Setup();
  absl::Status SetUpNino(std::shared_ptr<const NiNoModel> model);
  absl::Status Resume();
  absl::Status Loop();
  absl::StatusOr<TrainSummary> Finish();

 private:
  bool main_rank() const { return env_.rank == 0; }
  absl::StatusOr<double> TrainStep(int64_t step);
  NinoStepOutcome UpdateStep();
  absl::StatusOr<std::pair<double, double>> Evaluate();
  absl::Status LogStep(int64_t step, const NinoStepOutcome& out, bool evaluated, double metric,
                       double val_loss);
  void PrintProgress(int64_t step, double metric) const;
  absl::Status SaveCheckpoint(int64_t step);
  absl::Status OpenTrajectory();
  absl::Status RecordTrajectory();
  double Seconds() const { return 1e-6 * static_cast<double>(io_->NowMicros()); }
  double Elapsed() const { return Seconds() - t0_; }

  const TrainOptions& o_;
  const DistEnv env_;
  Env* const io_;  // files and the clock
  std::unique_ptr<Task> task_;
  std::unique_ptr<Distributed> dist_;
  NamedParamList named_;
  std::vector<torch::Tensor> params_;
  std::unique_ptr<torch::optim::Optimizer> base_;
  std::unique_ptr<client::NowcastOptimizer> nino_;  // null: plain optimizer steps
  std::unique_ptr<MetricsLog> metrics_;
  std::unique_ptr<TrajectoryWriter> trajectory_;  // rank 0 with --record_dir
  int64_t record_every_ = 0;
  std::string ckpt_path_;
  int64_t start_ = 0, step_ = 0;
  double last_loss_ = 0, eval_seconds_ = 0, eval_cpu_seconds_ = 0, cpu0_ = 0;
  double t0_ = 0;  // Seconds() at the start of the loop
  TrainSummary sum_;
};

absl::Status TrainingRun::Setup() {
  at::set_num_threads(ThreadsFor(o_, env_));
  const bool use_nino = UsesNino(o_);
  const bool remote = !o_.nowcaster.empty();
  if (use_nino) {
    NowcastEngineOptions probe;  // the tuning is checked before any step, wherever NiNo runs
    if (absl::Status t = ApplyTuning(o_.nino_tuning, NiNoConfig{}, &probe); !t.ok()) return t;
  }
  // Everything that can be wrong with the inputs is checked before the process group forms.
  std::shared_ptr<const NiNoModel> nino_model;
  if (use_nino && !remote) {
    absl::StatusOr<ResolvedModel> resolved = ResolveModel(o_.nino_ckpt, /*allow_download=*/true);
    if (!resolved.ok()) return resolved.status();
    absl::StatusOr<NiNoModel> m = LoadModel(*resolved);
    if (!m.ok()) return m.status();
    nino_model = std::make_shared<const NiNoModel>(std::move(*m));
  }
  TaskOptions to;
  to.name = o_.task;
  to.seed = o_.seed;
  to.rank = env_.rank;
  to.world_size = env_.world_size;
  to.fashion_mnist_dir = o_.data_dir;
  to.text_cache = o_.text_cache;
  to.global_batch = o_.batch;
  to.eval_limit = o_.eval_limit;
  to.kernel_size = o_.kernel_size;
  auto task = MakeTask(to);
  if (!task.ok()) return task.status();
  task_ = std::move(*task);
  std::error_code ec;
  fs::create_directories(o_.out_dir, ec);
  if (ec)
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create --out_dir ", o_.out_dir, ": ", ec.message()));
  ckpt_path_ = (fs::path(o_.out_dir) / kCheckpointName).string();

  auto dist = Distributed::Create(env_, torch::kCPU);
  if (!dist.ok()) return dist.status();
  dist_ = std::move(*dist);
  for (const auto& p : task_->module().named_parameters()) {
    named_.push_back({p.key(), p.value()});
    params_.push_back(p.value());
  }
  // Identical initial weights everywhere (same seed already; the broadcast makes it a guarantee).
  if (auto s = dist_->BroadcastTensors(params_, 0); !s.ok()) return s;
  base_ = MakeBaseOptimizer(o_, task_->info(), named_);
  sum_.best_metric = task_->info().higher_is_better ? -1e300 : 1e300;
  return use_nino ? SetUpNino(std::move(nino_model)) : absl::OkStatus();
}

absl::Status TrainingRun::SetUpNino(std::shared_ptr<const NiNoModel> model) {
  client::NowcastOptimizerOptions co = ClientOptionsFor(o_, task_->info());
  co.step_search = o_.nino_step_search;
  co.reset_base_state = o_.nino_reset_adam;
  co.reset_momentum = o_.nino_reset_momentum;
  if (!co.step_search.empty()) co.probe_loss = [task = task_.get()] { return task->ProbeLoss(); };
  auto collectives = std::make_unique<DistributedCollectives>(dist_.get());
  absl::StatusOr<std::unique_ptr<client::NowcastOptimizer>> nino;
  if (!o_.nowcaster.empty()) {
    nino = client::NowcastOptimizer::Create(base_.get(), named_, co, std::move(collectives));
  } else {
    std::shared_ptr<Nowcaster> inner;
    if (main_rank()) {
      auto in_process = MakeInProcessNowcaster(o_, task_->info(), named_, std::move(model));
      if (!in_process.ok()) return in_process.status();
      inner = *in_process;
    }
    nino = client::NowcastOptimizer::CreateWithNowcaster(base_.get(), named_, co, inner,
                                                         std::move(collectives));
  }
  if (!nino.ok()) return nino.status();
  nino_ = std::move(*nino);
  if (main_rank() && !o_.quiet && !o_.nowcaster.empty()) {
    std::printf("NiNo steps run on the nowcaster at %s (job %s)\n", o_.nowcaster.c_str(),
                nino_->job_id().c_str());
  }
  return absl::OkStatus();
}

absl::Status TrainingRun::Resume() {
  if (o_.resume && io_->FileExists(ckpt_path_)) {
    auto c = LoadTrainCheckpoint(ckpt_path_);
    if (!c.ok()) return c.status();
    if (c->task != o_.task) {
      return absl::FailedPreconditionError(
          absl::StrCat(ckpt_path_, " belongs to task '", c->task, "', not '", o_.task, "'"));
    }
    if (auto s = LoadModelState(task_->module(), c->model); !s.ok()) return s;
    if (auto* adamw = dynamic_cast<torch::optim::AdamW*>(base_.get())) {
      if (auto s = RestoreAdamWState(*adamw, c->optimizer, named_); !s.ok()) return s;
    }
    if (nino_) {
      if (auto s = nino_->Restore(c->nino_step_idx, c->nino_history); !s.ok()) {
        return absl::DataLossError(
            absl::StrCat(ckpt_path_, ": entry 'nino' does not fit this run: ", s.message()));
      }
    }
    start_ = c->step;
    sum_.reached_at = c->reached_at;
    sum_.best_metric = c->best_metric;
    sum_.nino_steps = c->nino_steps;
    sum_.nino_failures = c->nino_failures;
    if (main_rank() && !o_.quiet)
      std::printf("resumed from %s at step %lld\n", ckpt_path_.c_str(),
                  static_cast<long long>(start_));
  }
  if (absl::Status s = OpenTrajectory(); !s.ok()) return s;
  if (main_rank()) {
    auto m = MetricsLog::Open(io_, (fs::path(o_.out_dir) / "metrics.jsonl").string(),
                              start_ > 0 ? start_ : -1);
    if (!m.ok()) return m.status();
    metrics_ = std::move(*m);
  }
  return absl::OkStatus();
}

absl::Status TrainingRun::OpenTrajectory() {
  if (!main_rank() || o_.record_dir.empty()) return absl::OkStatus();
  TrajectoryInfo info;
  info.task = o_.task;
  info.seed = o_.seed;
  info.lr = o_.lr > 0 ? o_.lr : task_->info().lr;
  info.optimizer = o_.optimizer;
  info.max_steps = o_.steps;
  record_every_ = o_.record_every > 0 ? o_.record_every : (o_.task == "lm" ? 200 : 4);
  info.every = record_every_;
  for (const auto& [n, p] : named_) info.params.push_back({n, p.sizes().vec()});
  info.graph = task_->info().graph;
  auto w = TrajectoryWriter::Open(io_, o_.record_dir, std::move(info), start_);
  if (!w.ok()) return w.status();
  trajectory_ = std::move(*w);
  return trajectory_->rows() == 0 ? trajectory_->Append(start_, FlatParamsOf(params_))
                                  : absl::OkStatus();
}

absl::Status TrainingRun::RecordTrajectory() {
  if (!trajectory_ || step_ % record_every_ != 0) return absl::OkStatus();
  return trajectory_->Append(step_, FlatParamsOf(params_));
}

absl::Status TrainingRun::SaveCheckpoint(int64_t step) {
  if (!main_rank()) return absl::OkStatus();
  // The trajectory's manifest covers at least the checkpoint's step (a resume truncates to it),
  // and the metrics lines that lead to the checkpoint are durable before it is.
  if (trajectory_) {
    if (absl::Status s = trajectory_->Flush(); !s.ok()) return s;
  }
  if (absl::Status s = metrics_->Sync(); !s.ok()) return s;
  TrainCheckpoint c;
  c.task = o_.task;
  c.seed = o_.seed;
  c.step = step;
  c.model = ModelState(task_->module());
  auto* adamw = dynamic_cast<torch::optim::AdamW*>(base_.get());
  c.optimizer = adamw ? AdamWStateByName(*adamw, named_) : io::PickleValue::Dict({});
  c.nino_step_idx = nino_ ? nino_->step_idx() : step;
  if (nino_) c.nino_history = nino_->history();
  c.reached_at = sum_.reached_at;
  c.best_metric = sum_.best_metric;
  c.nino_steps = sum_.nino_steps;
  c.nino_failures = sum_.nino_failures;
  return SaveTrainCheckpoint(io_, ckpt_path_, c);
}

absl::StatusOr<std::pair<double, double>> TrainingRun::Evaluate() {
  const double te = Seconds();
  const double ce = ProcessCpuSeconds();
  auto part = task_->EvalPartial();
  eval_cpu_seconds_ += ProcessCpuSeconds() - ce;
  eval_seconds_ += Seconds() - te;
  auto all = dist_->AllreduceScalars(part, Distributed::Op::kSum);
  if (!all.ok()) return all.status();
  return std::make_pair(task_->Metric(*all), Task::EvalLoss(*all));
}

// Forward/backward of `step`'s batch and the gradient allreduce; returns the global mean loss.
absl::StatusOr<double> TrainingRun::TrainStep(int64_t step) {
  double local_mean = 0;
  torch::Tensor loss = task_->TrainLoss(step, &local_mean);
  loss.backward();
  if (auto s = dist_->AllreduceGradients(params_, 1.0); !s.ok()) return s;
  return dist_->AllreduceScalar(local_mean / env_.world_size, Distributed::Op::kSum);
}

NinoStepOutcome TrainingRun::UpdateStep() {
  if (nino_) return nino_->step();
  base_->step();
  return NinoStepOutcome{};
}

absl::Status TrainingRun::LogStep(int64_t step, const NinoStepOutcome& out, bool evaluated,
                                  double metric, double val_loss) {
  if (!main_rank()) return absl::OkStatus();
  if (out.nino_step && !o_.quiet) {
    std::printf("step %lld: NiNo step k=%d %s (%.3f s)%s\n", static_cast<long long>(step), out.k,
                out.applied ? "applied" : "FAILED, took an Adam step instead", out.nowcast_seconds,
                out.applied ? "" : absl::StrCat(": ", out.status.message()).c_str());
  }
  if (!evaluated && !out.nino_step && !(o_.log_every > 0 && step % o_.log_every == 0))
    return absl::OkStatus();
  json line = {{"step", step}, {"time", Elapsed()}, {"loss", last_loss_}};
  if (evaluated) {
    line["val_" + task_->info().metric] = metric;
    line["val_loss"] = val_loss;
  }
  if (out.nino_step) {
    json n = {{"k", out.k}, {"applied", out.applied}, {"seconds", out.nowcast_seconds}};
    if (!out.applied) n["error"] = std::string(out.status.message());
    line["nino"] = n;
  }
  return metrics_->Append(line);
}

void TrainingRun::PrintProgress(int64_t step, double metric) const {
  if (!main_rank() || o_.quiet || o_.log_every <= 0 ||
      (step % o_.log_every != 0 && step != o_.steps))
    return;
  const double rate = (step - start_) / std::max(1e-9, Elapsed());
  std::string shown = "n/a";
  if (!std::isnan(metric)) {
    shown = absl::StrFormat("%.2f", metric);
  } else if (std::abs(sum_.best_metric) < 1e299) {
    shown = absl::StrFormat("%.2f (best)", sum_.best_metric);
  }
  std::printf("step %lld/%lld | %.1f steps/s | loss %.4f | %s %s | ETA %s\n",
              static_cast<long long>(step), static_cast<long long>(o_.steps), rate, last_loss_,
              task_->info().metric.c_str(), shown.c_str(),
              FormatDuration((o_.steps - step) / std::max(rate, 1e-9)).c_str());
  std::fflush(stdout);
}

absl::Status TrainingRun::Loop() {
  t0_ = Seconds();
  cpu0_ = ProcessCpuSeconds();
  step_ = start_;
  bool done = false;
  while (!done && step_ < o_.steps) {
    base_->zero_grad();  // a NiNo step needs no gradients
    if (!nino_ || nino_->need_grads()) {
      auto loss = TrainStep(step_);
      if (!loss.ok()) return loss.status();
      last_loss_ = *loss;
    }
    const NinoStepOutcome out = UpdateStep();
    ++step_;
    if (auto s = RecordTrajectory(); !s.ok()) return s;
    if (out.nino_step) {
      ++sum_.nino_steps;
      if (!out.applied) ++sum_.nino_failures;
    }
    const bool eval_now = (o_.eval_every > 0 && step_ % o_.eval_every == 0) || step_ == o_.steps;
    double metric = NAN, val_loss = NAN;
    if (eval_now) {
      auto m = Evaluate();
      if (!m.ok()) return m.status();
      std::tie(metric, val_loss) = *m;
      const bool better =
          task_->info().higher_is_better ? metric > sum_.best_metric : metric < sum_.best_metric;
      if (better) sum_.best_metric = metric;
      sum_.final_metric = metric;
      if (sum_.reached_at < 0 && task_->Reached(metric)) sum_.reached_at = step_;
    }
    if (auto s = LogStep(step_, out, eval_now, metric, val_loss); !s.ok()) return s;
    PrintProgress(step_, metric);
    if (o_.checkpoint_every > 0 && step_ % o_.checkpoint_every == 0) {
      if (auto s = SaveCheckpoint(step_); !s.ok()) return s;
    }
    if (o_.after_step) o_.after_step(step_);
    if (o_.stop_at_target && sum_.reached_at >= 0) done = true;
  }
  return absl::OkStatus();
}

absl::StatusOr<TrainSummary> TrainingRun::Finish() {
  sum_.steps_done = step_;
  sum_.seconds = Elapsed();
  // Training throughput: evaluation time excluded.
  sum_.steps_per_second = (step_ - start_) / std::max(1e-9, sum_.seconds - eval_seconds_);
  sum_.eval_seconds = eval_seconds_;
  sum_.cpu_steps_per_second =
      (step_ - start_) / std::max(1e-9, ProcessCpuSeconds() - cpu0_ - eval_cpu_seconds_);
  if (auto s = SaveCheckpoint(step_); !s.ok()) return s;
  sum_.params_sha256 = Sha256OfTensor(FlatParamsOf(params_));
  // Each rank records its final parameters' hash: all ranks must agree bit for bit.
  if (absl::Status s = WriteFileAtomically(
          io_, (fs::path(o_.out_dir) / absl::StrCat("rank", env_.rank, ".params.sha256")).string(),
          sum_.params_sha256 + "\n");
      !s.ok()) {
    return s;
  }
  const client::NowcastOptimizer::Stats st =
      nino_ ? nino_->stats() : client::NowcastOptimizer::Stats{};
  if (main_rank() && !o_.quiet && !o_.nowcaster.empty()) {
    std::printf(
        "nowcaster %s: %lld predictions (%lld failed), %lld snapshot uploads (%lld failed, %lld "
        "dropped), "
        "%lld registrations (%lld failed), %lld context resends\n",
        o_.nowcaster.c_str(), static_cast<long long>(st.remote.predictions),
        static_cast<long long>(st.remote.prediction_failures),
        static_cast<long long>(st.remote.uploads),
        static_cast<long long>(st.remote.upload_failures),
        static_cast<long long>(st.remote.uploads_dropped),
        static_cast<long long>(st.remote.registrations),
        static_cast<long long>(st.remote.register_failures),
        static_cast<long long>(st.remote.context_resends));
  }
  if (main_rank()) {
    const std::string m = task_->info().metric;
    json js = {{"task", o_.task},
               {"seed", o_.seed},
               {"nino", UsesNino(o_)},
               {"world_size", env_.world_size},
               {"steps_done", sum_.steps_done},
               {"reached_at", sum_.reached_at},
               {"target", task_->info().target},
               {"final_" + m, sum_.final_metric},
               {"best_" + m, sum_.best_metric},
               {"seconds", sum_.seconds},
               {"steps_per_second", sum_.steps_per_second},
               {"eval_seconds", sum_.eval_seconds},
               {"cpu_steps_per_second", sum_.cpu_steps_per_second},
               {"nino_steps", sum_.nino_steps},
               {"nino_failures", sum_.nino_failures},
               {"nowcaster", o_.nowcaster},
               {"params_sha256", sum_.params_sha256}};
    if (auto s = WriteJsonFile(io_, (fs::path(o_.out_dir) / "summary.json").string(), js);
        !s.ok()) {
      return s;
    }
    if (trajectory_) {
      if (auto s = trajectory_->Finish(js); !s.ok()) return s;
    }
  }
  (void)dist_->Barrier();
  return sum_;
}

}  // namespace

absl::StatusOr<TrainSummary> RunTraining(const TrainOptions& options) {
  return RunTraining(options, Env::Default());
}

absl::StatusOr<TrainSummary> RunTraining(const TrainOptions& options, Env* io) {
  if (auto s = ValidateTrainOptions(options); !s.ok()) return s;
  auto env = DistEnv::FromEnv();
  if (!env.ok()) return env.status();
  TrainingRun run(options, *env, io);
  if (auto s = run.Setup(); !s.ok()) return s;
  if (auto s = run.Resume(); !s.ok()) return s;
  if (auto s = run.Loop(); !s.ok()) return s;
  return run.Finish();
}

}  // namespace nino::trainer
