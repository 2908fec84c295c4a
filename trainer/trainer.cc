#include "trainer/trainer.h"

#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/io/checkpoint_locator.h"
#include "common/io/torch_file.h"
#include "common/nino/nino_optimizer.h"
#include "common/nino/nowcast_engine.h"
#include "trainer/dist/distributed.h"
#include "trainer/nowcast_client.h"
#include "trainer/task.h"

namespace nino::trainer {
namespace fs = std::filesystem;
using io::PickleValue;

namespace {

constexpr char kCheckpointName[] = "checkpoint.pt";
constexpr char kFormat[] = "nino_train/1";

// Rank 0 runs the inner nowcaster; all ranks agree on accepting its result (MIN of a flag), then
// rank 0's prediction is broadcast. Any failure on any rank makes every rank fall back alike.
class BroadcastNowcaster : public Nowcaster {
 public:
  BroadcastNowcaster(std::shared_ptr<Nowcaster> inner, Distributed* dist, int64_t num_params)
      : inner_(std::move(inner)), dist_(dist), num_params_(num_params) {}
  absl::StatusOr<torch::Tensor> Nowcast(const torch::Tensor& states, int k) override {
    torch::Tensor pred = torch::zeros({num_params_}, torch::kFloat32);
    double ok = 1;
    absl::Status why = absl::OkStatus();
    if (dist_->is_main()) {
      auto r = inner_->Nowcast(states, k);
      if (!r.ok()) {
        ok = 0;
        why = r.status();
      } else if (r->numel() != num_params_ || !torch::isfinite(*r).all().item<bool>()) {
        ok = 0;
        why = absl::InternalError("prediction has the wrong size or non-finite values");
      } else {
        pred.copy_(r->reshape({-1}));
      }
    }
    auto agreed = dist_->AllreduceScalar(ok, Distributed::Op::kMin);
    if (!agreed.ok()) return agreed.status();
    if (*agreed < 1) {
      return why.ok() ? absl::AbortedError("the nowcast was rejected on rank 0") : why;
    }
    if (dist_->world_size() > 1) {
      absl::Status s = dist_->BroadcastTensors({pred}, 0);
      if (!s.ok()) return s;
    }
    return pred;
  }

 private:
  std::shared_ptr<Nowcaster> inner_;
  Distributed* dist_;
  int64_t num_params_;
};

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
  return io::Sha256Hex(std::string(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size()));
}

absl::Status Validate(const TrainOptions& o) {
  auto bad = [](const std::string& m) { return absl::InvalidArgumentError(m); };
  if (o.steps <= 0) return bad(absl::StrCat("--steps must be > 0, got ", o.steps));
  if (o.lr < 0) return bad(absl::StrCat("--lr must be > 0, got ", o.lr));
  if (o.batch < 0) return bad(absl::StrCat("--batch must be > 0, got ", o.batch));
  if (o.ctx < 1 || o.period < o.ctx || o.period % o.ctx != 0) {
    return bad(absl::StrCat("--period must be a positive multiple of --ctx (", o.ctx, "), got ", o.period));
  }
  if (o.k_decay <= 0) return bad("--k_decay must be > 0");
  if (o.eval_every < 0 || o.log_every < 0 || o.checkpoint_every < 0) {
    return bad("--eval_every, --log_every and --checkpoint_every must be >= 0");
  }
  if (o.out_dir.empty()) return bad("--out_dir is required");
  if (o.optimizer != "adamw" && o.optimizer != "sgd") {
    return bad(absl::StrCat("--optimizer must be adamw or sgd, got '", o.optimizer, "'"));
  }
  if (o.threads < 0) return bad("--threads must be >= 0");
  // Other ranks wait for rank 0's nowcast inside a collective, which times out after 120 s.
  if (!o.nowcaster.empty() && (o.nowcaster_timeout_ms <= 0 || o.nowcaster_timeout_ms > 100000)) {
    return bad(absl::StrCat("--nowcaster_timeout_ms must be in 1..100000, got ", o.nowcaster_timeout_ms));
  }
  return absl::OkStatus();
}

// Model state: parameters then buffers, by name.
io::NamedTensors ModelState(torch::nn::Module& m) {
  io::NamedTensors out;
  for (const auto& p : m.named_parameters()) out.push_back({p.key(), p.value().detach().clone()});
  for (const auto& b : m.named_buffers()) out.push_back({b.key(), b.value().detach().clone()});
  return out;
}

absl::Status LoadModelState(torch::nn::Module& m, const io::NamedTensors& saved) {
  std::map<std::string, torch::Tensor> by_name(saved.begin(), saved.end());
  torch::NoGradGuard no_grad;
  auto load = [&](const std::string& name, torch::Tensor& t) -> absl::Status {
    auto it = by_name.find(name);
    if (it == by_name.end()) return absl::DataLossError(absl::StrCat("checkpoint lacks '", name, "'"));
    if (it->second.sizes() != t.sizes()) {
      return absl::FailedPreconditionError(absl::StrCat("checkpoint '", name, "' has shape ",
                                                        c10::str(it->second.sizes()), ", the model ",
                                                        c10::str(t.sizes())));
    }
    t.copy_(it->second);
    return absl::OkStatus();
  };
  for (auto& p : m.named_parameters()) {
    if (auto s = load(p.key(), p.value()); !s.ok()) return s;
  }
  for (auto& b : m.named_buffers()) {
    if (auto s = load(b.key(), b.value()); !s.ok()) return s;
  }
  return absl::OkStatus();
}

std::string StateKey(const torch::Tensor& p) { return c10::guts::to_string(p.unsafeGetTensorImpl()); }

PickleValue OptimizerState(torch::optim::AdamW& opt, const std::vector<std::pair<std::string, torch::Tensor>>& params) {
  std::vector<std::pair<PickleValue, PickleValue>> items;
  for (const auto& [name, p] : params) {
    auto it = opt.state().find(StateKey(p));
    if (it == opt.state().end()) continue;
    auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
    items.push_back({PickleValue::String(name),
                     PickleValue::Dict({{PickleValue::String("step"), PickleValue::Int(s.step())},
                                        {PickleValue::String("exp_avg"), PickleValue::FromTensor(s.exp_avg().clone())},
                                        {PickleValue::String("exp_avg_sq"), PickleValue::FromTensor(s.exp_avg_sq().clone())}})});
  }
  return PickleValue::Dict(std::move(items));
}

absl::Status LoadOptimizerState(torch::optim::AdamW& opt, const PickleValue& saved,
                                const std::vector<std::pair<std::string, torch::Tensor>>& params) {
  if (!saved.is_dict()) return absl::DataLossError("checkpoint optimizer state is not a dict");
  opt.state().clear();
  for (const auto& [name, p] : params) {
    const PickleValue* s = saved.Find(name);
    if (s == nullptr) continue;  // never stepped
    const PickleValue* step = s->Find("step");
    const PickleValue* m = s->Find("exp_avg");
    const PickleValue* v = s->Find("exp_avg_sq");
    if (!step || !m || !v || !step->is_int() || !m->is_tensor() || !v->is_tensor() ||
        m->as_tensor().sizes() != p.sizes() || v->as_tensor().sizes() != p.sizes()) {
      return absl::DataLossError(absl::StrCat("checkpoint optimizer state of '", name, "' is malformed"));
    }
    auto st = std::make_unique<torch::optim::AdamWParamState>();
    st->step(step->as_int());
    st->exp_avg(m->as_tensor().clone());
    st->exp_avg_sq(v->as_tensor().clone());
    opt.state()[StateKey(p)] = std::move(st);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TrainSummary> RunTraining(const TrainOptions& o) {
  if (auto s = Validate(o); !s.ok()) return s;
  auto env = DistEnv::FromEnv();
  if (!env.ok()) return env.status();
  const int local_world = std::max(1, env->world_size);
  const int threads = o.threads > 0 ? o.threads
                                    : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) /
                                                      std::min(local_world, 64));
  at::set_num_threads(threads);
  const bool main_rank = env->rank == 0;
  const bool remote_nino = !o.nowcaster.empty();
  const bool use_nino = remote_nino || (!o.nino_ckpt.empty() && o.nino_ckpt != "none");
  if (use_nino) {
    NowcastEngineOptions probe;  // the tuning is checked before any step, wherever NiNo runs
    if (absl::Status t = ApplyTuning(o.nino_tuning, NiNoConfig{}, &probe); !t.ok()) return t;
  }

  // Everything that can be wrong with the inputs is checked before the process group forms.
  std::shared_ptr<const NiNoModel> nino_model;
  if (use_nino && !remote_nino) {
    auto m = NiNoModel::Load(o.nino_ckpt);
    if (!m.ok()) return m.status();
    nino_model = std::make_shared<const NiNoModel>(std::move(*m));
  }
  TaskOptions to;
  to.name = o.task;
  to.seed = o.seed;
  to.rank = env->rank;
  to.world_size = env->world_size;
  to.fashion_mnist_dir = o.data_dir;
  to.text_cache = o.text_cache;
  to.global_batch = o.batch;
  to.eval_limit = o.eval_limit;
  auto task_or = MakeTask(to);
  if (!task_or.ok()) return task_or.status();
  Task& task = **task_or;
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create --out_dir ", o.out_dir, ": ", ec.message()));
  const std::string ckpt_path = (fs::path(o.out_dir) / kCheckpointName).string();

  auto dist_or = Distributed::Create(*env, torch::kCPU);
  if (!dist_or.ok()) return dist_or.status();
  Distributed& dist = **dist_or;

  torch::nn::Module& model = task.module();
  std::vector<std::pair<std::string, torch::Tensor>> named;
  std::vector<torch::Tensor> params;
  for (const auto& p : model.named_parameters()) {
    named.push_back({p.key(), p.value()});
    params.push_back(p.value());
  }
  // Identical initial weights everywhere (same seed already; the broadcast makes it a guarantee).
  if (auto s = dist.BroadcastTensors(params, 0); !s.ok()) return s;

  // AdamW (weight decay 0 = Adam); for decayed tasks biases and norm gains are not decayed.
  const double lr = o.lr > 0 ? o.lr : task.info().lr;
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& [name, p] : named) (p.dim() >= 2 ? decay : no_decay).push_back(p);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(lr).weight_decay(task.info().weight_decay)));
  if (!no_decay.empty()) {
    groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                      torch::optim::AdamWOptions(lr).weight_decay(0)));
  }
  std::unique_ptr<torch::optim::Optimizer> base;
  if (o.optimizer == "sgd") {
    base = std::make_unique<torch::optim::SGD>(params, torch::optim::SGDOptions(lr));
  } else {
    base = std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(lr).weight_decay(0));
  }
  auto* adamw = dynamic_cast<torch::optim::AdamW*>(base.get());

  std::shared_ptr<Nowcaster> nowcaster;
  std::shared_ptr<RemoteNowcaster> remote;  // rank 0 with --nowcaster
  if (use_nino) {
    std::shared_ptr<Nowcaster> inner;
    if (main_rank && remote_nino) {
      RemoteNowcasterOptions ro;
      ro.address = o.nowcaster;
      ro.job_id = MakeJobId(o.task, o.seed);
      for (const auto& [n, p] : named) ro.params.push_back({n, p.sizes().vec()});
      ro.graph = task.info().graph;
      ro.nino_model = o.nino_model;
      ro.period = o.period;
      ro.ctx = o.ctx;
      ro.max_train_steps = o.steps;
      ro.k_decay = o.k_decay;
      ro.lpe_seed = o.seed;
      ro.tuning = o.nino_tuning;
      ro.nowcast_timeout = absl::Milliseconds(o.nowcaster_timeout_ms);
      ro.rpc_timeout = std::min(absl::Seconds(30), absl::Milliseconds(o.nowcaster_timeout_ms));
      ro.quiet = o.quiet;
      remote = std::make_shared<RemoteNowcaster>(std::move(ro));
      inner = remote;
      if (!o.quiet) std::printf("NiNo steps run on the nowcaster at %s (job %s)\n", o.nowcaster.c_str(), remote->job_id().c_str());
    } else if (main_rank) {
      std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
      for (const auto& [n, p] : named) shapes.push_back({n, p.sizes().vec()});
      auto table = MakeParamTable(shapes);
      if (!table.ok()) return table.status();
      NowcastEngineOptions eo;
      eo.lpe.sign_seed = o.seed;
      if (absl::Status t = ApplyTuning(o.nino_tuning, nino_model->config(), &eo); !t.ok()) return t;
      auto engine = NowcastEngine::Create(nino_model, *table, task.info().graph, eo);
      if (!engine.ok()) return engine.status();
      inner = std::make_shared<InProcessNowcaster>(std::shared_ptr<NowcastEngine>(std::move(*engine)));
    }
    int64_t P = 0;
    for (const auto& p : params) P += p.numel();
    nowcaster = std::make_shared<BroadcastNowcaster>(inner, &dist, P);
  }
  NinoOptimizerOptions no;
  no.period = o.period;
  no.ctx = o.ctx;
  no.max_train_steps = o.steps;
  no.k_decay = o.k_decay;
  NinoOptimizer opt(base.get(), params, nowcaster, no);

  // Resume.
  int64_t start = 0;
  TrainSummary sum;
  sum.best_metric = task.info().higher_is_better ? -1e300 : 1e300;
  if (o.resume && fs::exists(ckpt_path)) {
    auto file = io::LoadTorchFile(ckpt_path);
    if (!file.ok()) return file.status();
    const PickleValue* fmt = file->Find("format");
    const PickleValue* task_name = file->Find("task");
    if (!fmt || !fmt->is_string() || fmt->as_string() != kFormat) {
      return absl::FailedPreconditionError(absl::StrCat(ckpt_path, " is not a nino_train checkpoint"));
    }
    if (!task_name || task_name->as_string() != o.task) {
      return absl::FailedPreconditionError(absl::StrCat(ckpt_path, " belongs to task '",
                                                        task_name ? task_name->as_string() : "?",
                                                        "', not '", o.task, "'"));
    }
    auto model_sd = io::ToNamedTensors(*file->Find("model"));
    if (!model_sd.ok()) return model_sd.status();
    if (auto s = LoadModelState(model, *model_sd); !s.ok()) return s;
    if (adamw) {
      if (auto s = LoadOptimizerState(*adamw, *file->Find("optimizer"), named); !s.ok()) return s;
    }
    const PickleValue* nino = file->Find("nino");
    std::vector<torch::Tensor> history;
    for (const auto& h : nino->Find("history")->items()) history.push_back(h.as_tensor());
    if (auto s = opt.Restore(nino->Find("step_idx")->as_int(), history); !s.ok()) return s;
    start = file->Find("step")->as_int();
    sum.reached_at = file->Find("reached_at")->as_int();
    sum.best_metric = file->Find("best_metric")->as_float();
    sum.nino_steps = file->Find("nino_steps")->as_int();
    sum.nino_failures = file->Find("nino_failures")->as_int();
    if (main_rank && !o.quiet) std::printf("resumed from %s at step %lld\n", ckpt_path.c_str(), static_cast<long long>(start));
  }

  // Metrics: keep the lines of steps before `start` (a resumed run rewrites what follows).
  const std::string metrics_path = (fs::path(o.out_dir) / "metrics.jsonl").string();
  std::unique_ptr<std::ofstream> metrics;
  if (main_rank) {
    std::vector<std::string> keep;
    if (start > 0) {
      std::ifstream in(metrics_path);
      for (std::string line; std::getline(in, line);) {
        auto pos = line.find("\"step\":");
        if (pos != std::string::npos && std::atoll(line.c_str() + pos + 7) <= start) keep.push_back(line);
      }
    }
    metrics = std::make_unique<std::ofstream>(metrics_path, std::ios::trunc);
    for (const auto& l : keep) *metrics << l << "\n";
  }

  auto save_checkpoint = [&](int64_t step) -> absl::Status {
    if (!main_rank) return absl::OkStatus();
    std::vector<PickleValue> hist;
    for (const auto& h : opt.history()) hist.push_back(PickleValue::FromTensor(h));
    auto S = [](const char* s) { return PickleValue::String(s); };
    PickleValue top = PickleValue::Dict({
        {S("format"), S(kFormat)},
        {S("task"), PickleValue::String(o.task)},
        {S("seed"), PickleValue::Int(static_cast<int64_t>(o.seed))},
        {S("step"), PickleValue::Int(step)},
        {S("model"), io::StateDictValue(ModelState(model))},
        {S("optimizer"), adamw ? OptimizerState(*adamw, named) : PickleValue::Dict({})},
        {S("nino"), PickleValue::Dict({{S("step_idx"), PickleValue::Int(opt.step_idx())},
                                       {S("history"), PickleValue::List(hist)}})},
        {S("reached_at"), PickleValue::Int(sum.reached_at)},
        {S("best_metric"), PickleValue::Float(sum.best_metric)},
        {S("nino_steps"), PickleValue::Int(sum.nino_steps)},
        {S("nino_failures"), PickleValue::Int(sum.nino_failures)},
    });
    return io::SaveTorchFile(ckpt_path, top);
  };

  double eval_seconds = 0, eval_cpu_seconds = 0;
  auto evaluate = [&]() -> absl::StatusOr<std::pair<double, double>> {
    const auto te = std::chrono::steady_clock::now();
    const double ce = ProcessCpuSeconds();
    auto part = task.EvalPartial();
    eval_cpu_seconds += ProcessCpuSeconds() - ce;
    eval_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - te).count();
    auto all = dist.AllreduceScalars(part, Distributed::Op::kSum);
    if (!all.ok()) return all.status();
    return std::make_pair(task.Metric(*all), Task::EvalLoss(*all));
  };

  const auto t0 = std::chrono::steady_clock::now();
  const double cpu0 = ProcessCpuSeconds();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  double last_loss = 0;
  int64_t step = start;
  bool done = false;
  while (!done && step < o.steps) {
    double local_mean = 0;
    if (opt.need_grads()) {
      base->zero_grad();
      torch::Tensor loss = task.TrainLoss(step, &local_mean);
      loss.backward();
      if (auto s = dist.AllreduceGradients(params, 1.0); !s.ok()) return s;
      auto mean = dist.AllreduceScalar(local_mean / env->world_size, Distributed::Op::kSum);
      if (!mean.ok()) return mean.status();
      last_loss = *mean;
    } else {
      base->zero_grad();  // a NiNo step needs no gradients
    }
    if (remote && !opt.need_grads()) remote->SetNinoStep(opt.step_idx());
    NinoStepOutcome out = opt.step();
    if (remote && out.state_recorded && !out.nino_step) remote->StateRecorded(out.step_idx, opt.history().back());
    ++step;
    std::string event;
    if (out.nino_step) {
      ++sum.nino_steps;
      if (!out.applied) ++sum.nino_failures;
      event = absl::StrFormat(",\"nino\":{\"k\":%d,\"applied\":%s,\"seconds\":%.4f%s}", out.k,
                              out.applied ? "true" : "false", out.nowcast_seconds,
                              out.applied ? "" : absl::StrCat(",\"error\":\"", out.status.message(), "\""));
      if (main_rank && !o.quiet) {
        std::printf("step %lld: NiNo step k=%d %s (%.3f s)%s\n", static_cast<long long>(step), out.k,
                    out.applied ? "applied" : "FAILED, took an Adam step instead", out.nowcast_seconds,
                    out.applied ? "" : absl::StrCat(": ", out.status.message()).c_str());
      }
    }
    const bool eval_now = (o.eval_every > 0 && step % o.eval_every == 0) || step == o.steps;
    double metric = NAN, val_loss = NAN;
    if (eval_now) {
      auto m = evaluate();
      if (!m.ok()) return m.status();
      metric = m->first;
      val_loss = m->second;
      const bool better = task.info().higher_is_better ? metric > sum.best_metric : metric < sum.best_metric;
      if (better) sum.best_metric = metric;
      sum.final_metric = metric;
      if (sum.reached_at < 0 && task.Reached(metric)) sum.reached_at = step;
    }
    if (main_rank && (eval_now || !event.empty() || (o.log_every > 0 && step % o.log_every == 0))) {
      *metrics << absl::StrFormat("{\"step\":%d,\"time\":%.3f,\"loss\":%.6f", step, elapsed(), last_loss);
      if (eval_now) *metrics << absl::StrFormat(",\"val_%s\":%.4f,\"val_loss\":%.6f", task.info().metric, metric, val_loss);
      *metrics << event << "}\n";
      metrics->flush();
    }
    if (main_rank && !o.quiet && o.log_every > 0 && (step % o.log_every == 0 || step == o.steps)) {
      const double rate = (step - start) / std::max(1e-9, elapsed());
      std::printf("step %lld/%lld | %.1f steps/s | loss %.4f | %s %s | ETA %s\n",
                  static_cast<long long>(step), static_cast<long long>(o.steps), rate, last_loss,
                  task.info().metric.c_str(),
                  !std::isnan(metric)         ? absl::StrFormat("%.2f", metric).c_str()
                  : std::abs(sum.best_metric) < 1e299 ? absl::StrFormat("%.2f (best)", sum.best_metric).c_str()
                                                      : "n/a",
                  FormatDuration((o.steps - step) / std::max(rate, 1e-9)).c_str());
      std::fflush(stdout);
    }
    if (o.checkpoint_every > 0 && step % o.checkpoint_every == 0) {
      if (auto s = save_checkpoint(step); !s.ok()) return s;
    }
    if (step == o.crash_at_step) {
      std::fflush(stdout);
      std::_Exit(3);  // test hook: a kill with no chance to clean up
    }
    if (o.stop_at_target && sum.reached_at >= 0) done = true;
  }
  sum.steps_done = step;
  sum.seconds = elapsed();
  // Training throughput: evaluation time excluded.
  sum.steps_per_second = (step - start) / std::max(1e-9, sum.seconds - eval_seconds);
  sum.eval_seconds = eval_seconds;
  sum.cpu_steps_per_second = (step - start) / std::max(1e-9, ProcessCpuSeconds() - cpu0 - eval_cpu_seconds);
  if (auto s = save_checkpoint(step); !s.ok()) return s;
  sum.params_sha256 = Sha256OfTensor(opt.FlatParams());
  {  // Each rank records its final parameters' hash: all ranks must agree bit for bit.
    std::ofstream h((fs::path(o.out_dir) / absl::StrCat("rank", env->rank, ".params.sha256")).string(),
                    std::ios::trunc);
    h << sum.params_sha256 << "\n";
  }
  if (remote && !o.quiet) {
    const RemoteNowcaster::Stats st = remote->stats();
    std::printf("nowcaster %s: %lld predictions (%lld failed), %lld snapshot uploads (%lld failed, %lld dropped), "
                "%lld registrations (%lld failed), %lld context resends\n",
                o.nowcaster.c_str(), static_cast<long long>(st.predictions),
                static_cast<long long>(st.prediction_failures), static_cast<long long>(st.uploads),
                static_cast<long long>(st.upload_failures), static_cast<long long>(st.uploads_dropped),
                static_cast<long long>(st.registrations), static_cast<long long>(st.register_failures),
                static_cast<long long>(st.context_resends));
  }
  if (main_rank) {
    std::ofstream js((fs::path(o.out_dir) / "summary.json").string(), std::ios::trunc);
    js << absl::StrFormat(
        "{\"task\":\"%s\",\"seed\":%d,\"nino\":%s,\"world_size\":%d,\"steps_done\":%d,\"reached_at\":%d,"
        "\"target\":%.4f,\"final_%s\":%.4f,\"best_%s\":%.4f,\"seconds\":%.2f,\"steps_per_second\":%.2f,"
        "\"eval_seconds\":%.2f,\"cpu_steps_per_second\":%.2f,\"nino_steps\":%d,\"nino_failures\":%d,\"nowcaster\":\"%s\",\"params_sha256\":\"%s\"}\n",
        o.task, o.seed, use_nino ? "true" : "false", env->world_size, sum.steps_done, sum.reached_at,
        task.info().target, task.info().metric, sum.final_metric, task.info().metric, sum.best_metric,
        sum.seconds, sum.steps_per_second, sum.eval_seconds, sum.cpu_steps_per_second, sum.nino_steps, sum.nino_failures, o.nowcaster, sum.params_sha256);
  }
  (void)dist.Barrier();
  return sum;
}

}  // namespace nino::trainer
