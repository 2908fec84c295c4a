#include "metatrain/metatrainer.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "metatrain/batch_forward.h"
#include "metatrain/masked_l1.h"
#include "metatrain/validation.h"

namespace nino::metatrain {
namespace {

WindowOptions WindowsFor(const MetaTrainOptions& o) {
  WindowOptions w;
  w.lpe_dim = o.gnn ? 8 : 0;
  w.wte_size = o.wte_size;
  w.lm_global_scale = o.lm_global_scale;
  return w;
}

// A GNN takes at most max_feat_size slots per edge: a trajectory with wider kernels is refused
// before any training, naming it (WNN+ reads every slot alone, so it takes any width).
absl::Status CheckFeatSize(const TrajectoryWindows& w, const NiNoConfig& config) {
  if (!config.gnn) return absl::OkStatus();
  for (int64_t t = 0; t < w.num_trajectories(); ++t) {
    const int64_t f = w.graph(t).graph().feat_size;
    if (f > config.max_feat_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          w.dir(t), " has ", f, " feature slots per edge (kernels of ", f,
          " weights); this GNN takes at most ", config.max_feat_size, " (raise --max_feat_size)"));
    }
  }
  return absl::OkStatus();
}

std::string RngText(const std::mt19937_64& rng) {
  std::ostringstream out;
  out << rng;
  return out.str();
}

// Keeps the metrics lines of steps <= `step` (a resumed run rewrites what follows).
void TruncateMetrics(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::vector<std::string> keep;
  for (std::string line; std::getline(in, line);) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.value("step", int64_t{0}) <= step) keep.push_back(line);
  }
  in.close();
  std::ofstream out(path, std::ios::trunc);
  for (const auto& l : keep) out << l << "\n";
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetaTrainer>> MetaTrainer::Create(MetaTrainOptions options) {
  if (options.out_dir.empty()) return absl::InvalidArgumentError("out_dir is required");
  if (options.steps < 1 || options.batch_trajectories < 1 || options.ckpt_every < 1)
    return absl::InvalidArgumentError("steps, batch_trajectories and ckpt_every must be >= 1");
  std::unique_ptr<MetaTrainer> t(new MetaTrainer(std::move(options)));
  std::filesystem::create_directories(t->options_.out_dir);
  t->state_path_ = t->options_.out_dir + "/train_state.pt";
  t->metrics_path_ = t->options_.out_dir + "/metrics.jsonl";
  if (t->options_.model_out.empty()) t->options_.model_out = t->options_.out_dir + "/nino.pt";
  if (absl::Status s = t->InitOrResume(); !s.ok()) return s;
  return t;
}

nlohmann::json MetaTrainer::RecipeJson() const {
  const auto& o = options_;
  nlohmann::json recipe = {{"variant", o.gnn ? "gnn" : "wnn+"},
                           {"hid", o.hid},
                           {"steps", o.steps},
                           {"batch_trajectories", o.batch_trajectories},
                           {"lr", o.lr},
                           {"min_lr", o.min_lr},
                           {"weight_decay", o.weight_decay},
                           {"clip", o.clip},
                           {"seed", o.seed}};
  // The LM options only when they differ from the official recipe, so that checkpoints written
  // before they existed still resume.
  const MetaTrainOptions defaults;
  if (o.wte_size != defaults.wte_size) recipe["wte_size"] = o.wte_size;
  if (o.max_feat_size != defaults.max_feat_size) recipe["max_feat_size"] = o.max_feat_size;
  if (o.lm_global_scale != defaults.lm_global_scale) recipe["lm_global_scale"] = o.lm_global_scale;
  return recipe;
}

absl::Status MetaTrainer::InitOrResume() {
  NiNoConfig config;
  config.gnn = options_.gnn;
  config.hid = options_.hid;
  config.max_feat_size = options_.max_feat_size;
  // As nino_no_posw.pt (any tokenizer): the samples carry pos_w, but the word-token encoding
  // is not trained (not part of this recipe; see docs/METATRAINING.md).
  config.wte_pos_enc = false;
  auto model = TrainableNiNo::Create(config, options_.seed);
  if (!model.ok()) return model.status();
  model_ = *model;
  model_->to(options_.device);
  optimizer_ = std::make_unique<torch::optim::AdamW>(
      model_->parameters(),
      torch::optim::AdamWOptions(options_.lr).weight_decay(options_.weight_decay));
  nlohmann::json config_json = {{"recipe", RecipeJson()}, {"train_dirs", options_.train_dirs}};
  if (std::filesystem::exists(state_path_)) {
    if (absl::Status s = LoadTrainState(state_path_, *model_, *optimizer_, &progress_); !s.ok())
      return s;
    nlohmann::json saved = nlohmann::json::parse(progress_.config_json, nullptr, false);
    if (!saved.is_object() || saved["recipe"] != RecipeJson()) {
      return absl::FailedPreconditionError(absl::StrCat(
          state_path_, " was written by another configuration: ",
          saved.is_object() ? saved["recipe"].dump() : "?", " vs ", RecipeJson().dump()));
    }
    options_.train_dirs = saved["train_dirs"].get<std::vector<std::string>>();
    std::istringstream(progress_.rng) >> rng_;
    TruncateMetrics(metrics_path_, progress_.step);
    std::fprintf(stderr, "resumed from %s at step %lld\n", state_path_.c_str(),
                 static_cast<long long>(progress_.step));
  } else {
    rng_.seed(options_.seed);
    progress_.config_json = config_json.dump();
    std::remove(metrics_path_.c_str());
  }
  wall_at_start_ = progress_.wall_seconds;
  started_ = std::chrono::steady_clock::now();
  auto train = TrajectoryWindows::Open(options_.train_dirs, WindowsFor(options_));
  if (!train.ok()) return train.status();
  train_ = std::move(*train);
  if (absl::Status s = CheckFeatSize(*train_, config); !s.ok()) return s;
  if (!options_.val_dirs.empty()) {
    auto val = TrajectoryWindows::Open(options_.val_dirs, WindowsFor(options_));
    if (!val.ok()) return val.status();
    val_ = std::move(*val);
    if (absl::Status s = CheckFeatSize(*val_, config); !s.ok()) return s;
  }
  // A checkpoint from the start: the first NaN has something to roll back to.
  if (progress_.step == 0) return Checkpoint();
  return absl::OkStatus();
}

double MetaTrainer::LearningRate(int64_t step) const {
  // CosineAnnealingLR(T_max = steps, eta_min = min_lr), evaluated at the step being taken.
  const double pi = std::acos(-1.0);
  return options_.min_lr + 0.5 * (options_.lr - options_.min_lr) *
                               (1 + std::cos(pi * static_cast<double>(step) / options_.steps));
}

double MetaTrainer::WallSeconds() const {
  return wall_at_start_ +
         std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
}

bool MetaTrainer::TrainStep(double* loss_out, double* grad_norm) {
  std::vector<GraphSample> graphs;
  for (int64_t b = 0; b < options_.batch_trajectories; ++b) {
    for (auto& w : train_->Windows(train_->SampleSlice(&rng_))) graphs.push_back(std::move(w));
  }
  const GraphSample batch = MergeGraphs(graphs, model_->config().ctx).To(options_.device);
  const double lr = LearningRate(progress_.step);
  for (auto& group : optimizer_->param_groups())
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
  model_->train();
  const BatchPrediction p = PredictBatch(*model_, batch);
  torch::Tensor loss = MaskedL1(p.pred, p.y, p.mask);
  if (options_.loss_hook) options_.loss_hook(progress_.step, &loss);
  *loss_out = loss.item<double>();
  if (!std::isfinite(*loss_out)) return false;
  optimizer_->zero_grad();
  loss.backward();
  *grad_norm = torch::nn::utils::clip_grad_norm_(model_->parameters(), options_.clip);
  if (!std::isfinite(*grad_norm)) return false;
  optimizer_->step();
  ++progress_.step;
  return true;
}

absl::Status MetaTrainer::RollBack() {
  const int64_t at = progress_.step;
  const int64_t rollbacks = progress_.rollbacks + 1;
  if (rollbacks > options_.max_rollbacks) {
    return absl::ResourceExhaustedError(
        absl::StrCat("NaN at step ", at, ": ", options_.max_rollbacks, " rollbacks already"));
  }
  if (absl::Status s = LoadTrainState(state_path_, *model_, *optimizer_, &progress_); !s.ok())
    return s;
  progress_.rollbacks = rollbacks;
  TruncateMetrics(metrics_path_, progress_.step);  // the steps after it are redone
  // Another sample stream from here: the same batches would give the same NaN.
  rng_.seed(options_.seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(rollbacks));
  std::fprintf(stderr,
               "NaN loss or gradient at step %lld: rolled back to step %lld (checkpoint %s), "
               "sampler re-seeded (rollback %lld)\n",
               static_cast<long long>(at), static_cast<long long>(progress_.step),
               state_path_.c_str(), static_cast<long long>(rollbacks));
  AppendMetrics({{"step", progress_.step},
                 {"event", "nan_rollback"},
                 {"nan_at_step", at},
                 {"rollbacks", rollbacks}});
  return absl::OkStatus();
}

absl::Status MetaTrainer::Checkpoint() {
  progress_.rng = RngText(rng_);
  progress_.wall_seconds = WallSeconds();
  if (absl::Status s = SaveTrainState(state_path_, *model_, *optimizer_, progress_); !s.ok())
    return s;
  // The model file always holds the latest checkpoint's weights (a stopped run is usable).
  return model_->Save(options_.model_out);
}

void MetaTrainer::AppendMetrics(const nlohmann::json& line) {
  std::ofstream out(metrics_path_, std::ios::app);
  out << line.dump() << "\n";
}

absl::Status MetaTrainer::ValidateAndLog() {
  if (!val_) return absl::OkStatus();
  model_->eval();
  const ValidationResult r =
      Validate(*model_, *val_, val_->EvenSlices(options_.val_slices), options_.device);
  std::fprintf(stderr, "step %lld: validation L1 %.5f (no change %.5f, %lld windows)\n",
               static_cast<long long>(progress_.step), r.l1, r.l1_no_change,
               static_cast<long long>(r.windows));
  AppendMetrics({{"step", progress_.step},
                 {"val_l1", r.l1},
                 {"val_l1_no_change", r.l1_no_change},
                 {"windows", r.windows},
                 {"wall_seconds", WallSeconds()}});
  return absl::OkStatus();
}

absl::Status MetaTrainer::Run() {
  double loss_sum = 0;
  int64_t loss_n = 0;
  while (progress_.step < options_.steps) {
    if (options_.max_seconds > 0 && WallSeconds() - wall_at_start_ >= options_.max_seconds) {
      std::fprintf(stderr, "time limit: stopping at step %lld\n",
                   static_cast<long long>(progress_.step));
      return Checkpoint();
    }
    if (options_.stop_at > 0 && progress_.step >= options_.stop_at) return Checkpoint();
    double loss = 0, grad_norm = 0;
    const double lr = LearningRate(progress_.step);
    if (!TrainStep(&loss, &grad_norm)) {
      if (absl::Status s = RollBack(); !s.ok()) return s;
      continue;
    }
    AppendMetrics({{"step", progress_.step},
                   {"loss", loss},
                   {"lr", lr},
                   {"grad_norm", grad_norm},
                   {"wall_seconds", WallSeconds()}});
    loss_sum += loss;
    ++loss_n;
    if (progress_.step % options_.log_every == 0) {
      std::fprintf(stderr, "step %lld/%lld loss %.5f (mean of last %lld) lr %.3g %.1f s\n",
                   static_cast<long long>(progress_.step), static_cast<long long>(options_.steps),
                   loss_sum / loss_n, static_cast<long long>(loss_n), lr, WallSeconds());
      loss_sum = 0;
      loss_n = 0;
    }
    if (progress_.step % options_.ckpt_every == 0 || progress_.step == options_.steps) {
      if (absl::Status s = Checkpoint(); !s.ok()) return s;
    }
    if (options_.val_every > 0 && progress_.step % options_.val_every == 0) {
      if (absl::Status s = ValidateAndLog(); !s.ok()) return s;
    }
  }
  if (options_.val_every == 0 || progress_.step % options_.val_every != 0) {
    if (absl::Status s = ValidateAndLog(); !s.ok()) return s;
  }
  return model_->Save(options_.model_out);
}

}  // namespace nino::metatrain
