#include "client/nino_client.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace nino::client {
namespace {

absl::Status Bad(const std::string& m) {
  return absl::InvalidArgumentError(absl::StrCat("NowcastOptimizer: ", m));
}

absl::Status ValidateParams(const NamedParams& params) {
  if (params.empty()) return Bad("the model has no parameters");
  std::set<std::string> names;
  for (const auto& [name, p] : params) {
    if (!p.defined()) return Bad(absl::StrCat("parameter '", name, "' is undefined"));
    if (!p.is_floating_point())
      return Bad(absl::StrCat("parameter '", name, "' is not floating-point"));
    if (!names.insert(name).second)
      return Bad(absl::StrCat("parameter name '", name, "' appears twice"));
  }
  return absl::OkStatus();
}

absl::Status ValidateSchedule(const NowcastOptimizerOptions& o) {
  if (o.ctx < 1 || o.period < o.ctx || o.period % o.ctx != 0) {
    return Bad(
        absl::StrCat("period must be a positive multiple of ctx (", o.ctx, "), got ", o.period));
  }
  if (o.max_train_steps <= 0)
    return Bad(absl::StrCat("max_train_steps must be > 0, got ", o.max_train_steps));
  if (!(o.k_decay > 0)) return Bad(absl::StrCat("k_decay must be > 0, got ", o.k_decay));
  if (o.step_search.size() > 8) return Bad("step_search: at most 8 scales");
  for (double s : o.step_search) {
    if (!std::isfinite(s) || s < 0) return Bad(absl::StrCat("step_search: bad scale ", s));
  }
  if (!o.step_search.empty() && !o.probe_loss) return Bad("step_search needs probe_loss");
  if (o.reset_momentum && o.reset_base_state)
    return Bad("reset_momentum and reset_base_state exclude each other");
  return absl::OkStatus();
}

absl::Status ValidateBase(const torch::optim::Optimizer* base, const NowcastOptimizerOptions& o) {
  if (base == nullptr) return Bad("the base optimizer is null");
  if (o.reset_momentum && dynamic_cast<const torch::optim::Adam*>(base) == nullptr &&
      dynamic_cast<const torch::optim::AdamW*>(base) == nullptr &&
      dynamic_cast<const torch::optim::SGD*>(base) == nullptr) {
    return Bad("reset_momentum needs an Adam, AdamW or SGD base optimizer");
  }
  return absl::OkStatus();
}

// Zeroes the first moment of every parameter state of an Adam, AdamW or SGD optimizer.
void ZeroFirstMoments(torch::optim::Optimizer* base) {
  torch::NoGradGuard no_grad;
  for (auto& [key, state] : base->state()) {
    if (auto* adam = dynamic_cast<torch::optim::AdamParamState*>(state.get())) {
      adam->exp_avg().zero_();
    } else if (auto* adamw = dynamic_cast<torch::optim::AdamWParamState*>(state.get())) {
      adamw->exp_avg().zero_();
    } else if (auto* sgd = dynamic_cast<torch::optim::SGDParamState*>(state.get())) {
      if (sgd->momentum_buffer().defined()) sgd->momentum_buffer().zero_();
    }
  }
}

absl::Status ValidateRemote(const NowcastOptimizerOptions& o) {
  if (o.nowcaster.empty()) return Bad("nowcaster (host:port) is empty");
  if (o.nowcast_timeout <= absl::ZeroDuration() || o.rpc_timeout <= absl::ZeroDuration()) {
    return Bad("nowcast_timeout and rpc_timeout must be > 0");
  }
  if (o.graph.kind == GraphSpec::Kind::kDescribed && o.graph.description == nullptr) {
    return Bad("graph: kind described needs a description (see ModelDescriptionBuilder)");
  }
  if (absl::Status c = ChannelSecurity::Load(o.credentials).status(); !c.ok()) return c;
  NowcastEngineOptions probe;  // the server checks again; a bad value is the caller's error now
  if (absl::Status t = ApplyTuning(o.tuning, NiNoConfig{}, &probe); !t.ok())
    return Bad(std::string(t.message()));
  return absl::OkStatus();
}

NinoOptimizerOptions ScheduleOf(const NowcastOptimizerOptions& o) {
  NinoOptimizerOptions no;
  no.period = o.period;
  no.ctx = o.ctx;
  no.max_train_steps = o.max_train_steps;
  no.k_decay = o.k_decay;
  return no;
}

RemoteNowcasterOptions RemoteOptionsOf(const NowcastOptimizerOptions& o,
                                       const NamedParams& params) {
  RemoteNowcasterOptions ro;
  ro.address = o.nowcaster;
  ro.credentials = o.credentials;
  ro.job_id = o.job_id.empty() ? MakeJobId(o.job_name, o.lpe_seed) : o.job_id;
  for (const auto& [name, p] : params) ro.params.push_back({name, p.sizes().vec()});
  ro.graph = o.graph;
  ro.nino_model = o.nino_model;
  ro.period = o.period;
  ro.ctx = o.ctx;
  ro.max_train_steps = o.max_train_steps;
  ro.k_decay = o.k_decay;
  ro.lpe_seed = o.lpe_seed;
  ro.tuning = o.tuning;
  ro.nowcast_timeout = o.nowcast_timeout;
  ro.rpc_timeout = std::min(o.rpc_timeout, o.nowcast_timeout);
  ro.quiet = o.quiet;
  return ro;
}

}  // namespace

NamedParams NamedParameters(const torch::nn::Module& module) {
  NamedParams out;
  for (const auto& p : module.named_parameters()) out.push_back({p.key(), p.value()});
  return out;
}

absl::StatusOr<std::unique_ptr<NowcastOptimizer>> NowcastOptimizer::Create(
    torch::optim::Optimizer* base, NamedParams params, NowcastOptimizerOptions options,
    std::unique_ptr<Collectives> collectives) {
  if (absl::Status s = ValidateBase(base, options); !s.ok()) return s;
  if (absl::Status s = ValidateParams(params); !s.ok()) return s;
  if (absl::Status s = ValidateSchedule(options); !s.ok()) return s;
  if (absl::Status s = ValidateRemote(options); !s.ok()) return s;
  std::shared_ptr<RemoteNowcaster> remote;
  if (collectives == nullptr || collectives->rank() == 0) {
    remote = std::make_shared<RemoteNowcaster>(RemoteOptionsOf(options, params));
  }
  return std::unique_ptr<NowcastOptimizer>(new NowcastOptimizer(
      base, std::move(params), std::move(options), remote, remote, std::move(collectives)));
}

absl::StatusOr<std::unique_ptr<NowcastOptimizer>> NowcastOptimizer::CreateWithNowcaster(
    torch::optim::Optimizer* base, NamedParams params, NowcastOptimizerOptions options,
    std::shared_ptr<Nowcaster> rank0_nowcaster, std::unique_ptr<Collectives> collectives) {
  if (absl::Status s = ValidateBase(base, options); !s.ok()) return s;
  if (absl::Status s = ValidateParams(params); !s.ok()) return s;
  if (absl::Status s = ValidateSchedule(options); !s.ok()) return s;
  const bool root = collectives == nullptr || collectives->rank() == 0;
  if (root && !rank0_nowcaster) return Bad("rank 0 needs a nowcaster");
  return std::unique_ptr<NowcastOptimizer>(
      new NowcastOptimizer(base, std::move(params), std::move(options), std::move(rank0_nowcaster),
                           nullptr, std::move(collectives)));
}

NowcastOptimizer::NowcastOptimizer(torch::optim::Optimizer* base, NamedParams params,
                                   NowcastOptimizerOptions options,
                                   std::shared_ptr<Nowcaster> rank0,
                                   std::shared_ptr<RemoteNowcaster> remote,
                                   std::unique_ptr<Collectives> collectives)
    : options_(std::move(options)),
      base_(base),
      params_(std::move(params)),
      collectives_(std::move(collectives)),
      remote_(std::move(remote)) {
  std::vector<torch::Tensor> tensors;
  for (const auto& [name, p] : params_) {
    tensors.push_back(p);
    num_params_ += p.numel();
  }
  auto transaction =
      std::make_shared<DataParallelNowcaster>(std::move(rank0), collectives_.get(), num_params_);
  opt_ = std::make_unique<NinoOptimizer>(base, std::move(tensors), std::move(transaction),
                                         ScheduleOf(options_));
}

NowcastOptimizer::~NowcastOptimizer() = default;

void NowcastOptimizer::Log(const std::string& line) const {
  if (options_.quiet || rank() != 0) return;
  std::fprintf(stderr, "nino: %s\n", line.c_str());
  std::fflush(stderr);
}

absl::Status NowcastOptimizer::Restore(int64_t step_idx, std::vector<torch::Tensor> history) {
  return opt_->Restore(step_idx, std::move(history));
}

absl::StatusOr<double> NowcastOptimizer::SearchStepScale(const torch::Tensor& before) {
  torch::NoGradGuard no_grad;
  const torch::Tensor delta = opt_->FlatParams() - before;
  int best = 0;
  double best_loss = std::numeric_limits<double>::infinity();
  std::vector<double> losses;
  for (size_t i = 0; i < options_.step_search.size(); ++i) {
    const double s = options_.step_search[i];
    if (absl::Status st = opt_->SetFlatParams(before + s * delta); !st.ok()) return st;
    const double loss = options_.probe_loss();
    losses.push_back(loss);
    if (loss < best_loss) best_loss = loss, best = static_cast<int>(i);  // NaN never wins
  }
  if (collectives_ && collectives_->world_size() > 1) {
    torch::Tensor choice = torch::full(
        {1}, static_cast<double>(best),
        torch::TensorOptions().dtype(torch::kDouble).device(params_.front().second.device()));
    if (absl::Status st = collectives_->Broadcast(choice, 0); !st.ok()) return st;
    best = static_cast<int>(choice.item<double>());
  }
  const double scale = options_.step_search.at(best);
  if (absl::Status st = opt_->SetFlatParams(before + scale * delta); !st.ok()) return st;
  std::string line = absl::StrCat("step search: scale ", scale, " (probe losses");
  for (size_t i = 0; i < losses.size(); ++i)
    absl::StrAppend(&line, " ", options_.step_search[i], ":", losses[i]);
  Log(line + ")");
  return scale;
}

NinoStepOutcome NowcastOptimizer::step() {
  if (remote_ && !opt_->need_grads()) remote_->SetNinoStep(opt_->step_idx());
  torch::Tensor before;
  if (!options_.step_search.empty() && !opt_->need_grads()) before = opt_->FlatParams();
  NinoStepOutcome out = opt_->step();
  if (out.nino_step && out.applied && options_.reset_base_state) base_->state().clear();
  if (out.nino_step && out.applied && options_.reset_momentum) ZeroFirstMoments(base_);
  if (out.nino_step && out.applied && before.defined()) {
    absl::StatusOr<double> scale = SearchStepScale(before);
    if (scale.ok()) {
      stats_.last_step_scale = *scale;
    } else {
      Log(absl::StrCat("step search failed, the prediction stays applied: ",
                       scale.status().ToString()));
    }
  }
  if (remote_ && out.state_recorded && !out.nino_step)
    remote_->StateRecorded(out.step_idx, opt_->history().back());
  if (out.nino_step) {
    ++stats_.nino_steps;
    if (out.applied) {
      ++stats_.applied;
    } else {
      ++stats_.fallbacks;
      Log(absl::StrCat(
          "NiNo step at call ", out.step_idx, " (k=", out.k,
          ") failed; an ordinary optimizer step was taken instead: ", out.status.ToString()));
    }
  }
  return out;
}

NowcastOptimizer::Stats NowcastOptimizer::stats() const {
  Stats s = stats_;
  if (remote_) s.remote = remote_->stats();
  return s;
}

}  // namespace nino::client
