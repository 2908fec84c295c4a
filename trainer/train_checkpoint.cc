#include "trainer/train_checkpoint.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"

namespace nino::trainer {
namespace {
using io::PickleValue;

PickleValue S(const std::string& s) { return PickleValue::String(s); }

absl::Status Lost(const std::string& path, const std::string& entry, const std::string& what) {
  return absl::DataLossError(absl::StrCat(path, ": entry '", entry, "' ", what));
}

// Typed lookups: DATA_LOSS naming the entry when it is absent or of another type.
class Reader {
 public:
  Reader(const std::string& path, const PickleValue& top) : path_(path), top_(top) {}

  absl::StatusOr<const PickleValue*> Get(const PickleValue& dict, const std::string& entry,
                                         const std::string& key) const {
    const PickleValue* v = dict.Find(key);
    if (v == nullptr) return Lost(path_, entry, "is missing");
    return v;
  }
  absl::StatusOr<int64_t> Int(const PickleValue& dict, const std::string& entry,
                              const std::string& key) const {
    NINO_ASSIGN_OR_RETURN(const PickleValue* v, Get(dict, entry, key));
    if (!v->is_int()) return Lost(path_, entry, "is not an integer");
    return v->as_int();
  }
  absl::StatusOr<double> Float(const PickleValue& dict, const std::string& entry,
                               const std::string& key) const {
    NINO_ASSIGN_OR_RETURN(const PickleValue* v, Get(dict, entry, key));
    if (!v->is_float() && !v->is_int()) return Lost(path_, entry, "is not a number");
    return v->as_float();
  }
  absl::StatusOr<std::string> String(const PickleValue& dict, const std::string& entry,
                                     const std::string& key) const {
    NINO_ASSIGN_OR_RETURN(const PickleValue* v, Get(dict, entry, key));
    if (!v->is_string()) return Lost(path_, entry, "is not a string");
    return v->as_string();
  }
  const PickleValue& top() const { return top_; }
  const std::string& path() const { return path_; }

 private:
  const std::string& path_;
  const PickleValue& top_;
};

absl::Status ReadNino(const Reader& r, TrainCheckpoint* c) {
  const PickleValue* nino = nullptr;
  NINO_ASSIGN_OR_RETURN(nino, r.Get(r.top(), "nino", "nino"));
  if (!nino->is_dict()) return Lost(r.path(), "nino", "is not a dict");
  NINO_ASSIGN_OR_RETURN(c->nino_step_idx, r.Int(*nino, "nino.step_idx", "step_idx"));
  const PickleValue* hist = nullptr;
  NINO_ASSIGN_OR_RETURN(hist, r.Get(*nino, "nino.history", "history"));
  if (!hist->is_list() && !hist->is_tuple()) return Lost(r.path(), "nino.history", "is not a list");
  for (size_t i = 0; i < hist->items().size(); ++i) {
    const PickleValue& h = hist->items()[i];
    if (!h.is_tensor())
      return Lost(r.path(), absl::StrCat("nino.history[", i, "]"), "is not a tensor");
    c->nino_history.push_back(h.as_tensor());
  }
  return absl::OkStatus();
}

absl::Status ReadCounters(const Reader& r, TrainCheckpoint* c) {
  NINO_ASSIGN_OR_RETURN(c->step, r.Int(r.top(), "step", "step"));
  NINO_ASSIGN_OR_RETURN(c->reached_at, r.Int(r.top(), "reached_at", "reached_at"));
  NINO_ASSIGN_OR_RETURN(c->best_metric, r.Float(r.top(), "best_metric", "best_metric"));
  NINO_ASSIGN_OR_RETURN(c->nino_steps, r.Int(r.top(), "nino_steps", "nino_steps"));
  NINO_ASSIGN_OR_RETURN(c->nino_failures, r.Int(r.top(), "nino_failures", "nino_failures"));
  int64_t seed = 0;
  NINO_ASSIGN_OR_RETURN(seed, r.Int(r.top(), "seed", "seed"));
  c->seed = static_cast<uint64_t>(seed);
  if (c->step < 0) return Lost(r.path(), "step", "is negative");
  return absl::OkStatus();
}

}  // namespace

absl::Status SaveTrainCheckpoint(const std::string& path, const TrainCheckpoint& c) {
  return SaveTrainCheckpoint(Env::Default(), path, c);
}

absl::Status SaveTrainCheckpoint(Env* env, const std::string& path, const TrainCheckpoint& c) {
  std::vector<PickleValue> hist;
  for (const auto& h : c.nino_history) hist.push_back(PickleValue::FromTensor(h));
  PickleValue top = PickleValue::Dict({
      {S("format"), S(kTrainCheckpointFormat)},
      {S("task"), S(c.task)},
      {S("seed"), PickleValue::Int(static_cast<int64_t>(c.seed))},
      {S("step"), PickleValue::Int(c.step)},
      {S("model"), io::StateDictValue(c.model)},
      {S("optimizer"), c.optimizer.is_dict() ? c.optimizer : PickleValue::Dict({})},
      {S("nino"), PickleValue::Dict({{S("step_idx"), PickleValue::Int(c.nino_step_idx)},
                                     {S("history"), PickleValue::List(hist)}})},
      {S("reached_at"), PickleValue::Int(c.reached_at)},
      {S("best_metric"), PickleValue::Float(c.best_metric)},
      {S("nino_steps"), PickleValue::Int(c.nino_steps)},
      {S("nino_failures"), PickleValue::Int(c.nino_failures)},
  });
  return io::SaveTorchFile(env, path, top);
}

absl::StatusOr<TrainCheckpoint> LoadTrainCheckpoint(const std::string& path) {
  NINO_ASSIGN_OR_RETURN(const PickleValue file, io::LoadTorchFile(path));
  if (!file.is_dict())
    return absl::DataLossError(absl::StrCat(path, ": the top level is not a dict"));
  const PickleValue* fmt = file.Find("format");
  if (fmt == nullptr || !fmt->is_string() || fmt->as_string() != kTrainCheckpointFormat) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is not a ", kTrainCheckpointFormat, " checkpoint (format ",
                     fmt == nullptr ? std::string("absent") : fmt->DebugString(1), ")"));
  }
  const Reader r(path, file);
  TrainCheckpoint c;
  NINO_ASSIGN_OR_RETURN(c.task, r.String(file, "task", "task"));
  const PickleValue* model = nullptr;
  NINO_ASSIGN_OR_RETURN(model, r.Get(file, "model", "model"));
  auto sd = io::ToNamedTensors(*model);
  if (!sd.ok()) return Lost(path, "model", absl::StrCat("is malformed: ", sd.status().message()));
  c.model = std::move(*sd);
  const PickleValue* optimizer = nullptr;
  NINO_ASSIGN_OR_RETURN(optimizer, r.Get(file, "optimizer", "optimizer"));
  if (!optimizer->is_dict()) return Lost(path, "optimizer", "is not a dict");
  c.optimizer = *optimizer;
  if (absl::Status s = ReadNino(r, &c); !s.ok()) return s;
  if (absl::Status s = ReadCounters(r, &c); !s.ok()) return s;
  return c;
}

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
    if (it == by_name.end())
      return absl::DataLossError(absl::StrCat("checkpoint entry 'model' lacks '", name, "'"));
    if (it->second.sizes() != t.sizes()) {
      return absl::FailedPreconditionError(absl::StrCat("checkpoint '", name, "' has shape ",
                                                        c10::str(it->second.sizes()),
                                                        ", the model ", c10::str(t.sizes())));
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

namespace {
std::string StateKey(const torch::Tensor& p) {
  return c10::guts::to_string(p.unsafeGetTensorImpl());
}
}  // namespace

PickleValue AdamWStateByName(torch::optim::AdamW& opt, const NamedParamList& params) {
  std::vector<std::pair<PickleValue, PickleValue>> items;
  for (const auto& [name, p] : params) {
    auto it = opt.state().find(StateKey(p));
    if (it == opt.state().end()) continue;
    auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
    items.push_back(
        {S(name),
         PickleValue::Dict({{S("step"), PickleValue::Int(s.step())},
                            {S("exp_avg"), PickleValue::FromTensor(s.exp_avg().clone())},
                            {S("exp_avg_sq"), PickleValue::FromTensor(s.exp_avg_sq().clone())}})});
  }
  return PickleValue::Dict(std::move(items));
}

absl::Status RestoreAdamWState(torch::optim::AdamW& opt, const PickleValue& saved,
                               const NamedParamList& params) {
  if (!saved.is_dict()) return absl::DataLossError("checkpoint entry 'optimizer' is not a dict");
  opt.state().clear();
  for (const auto& [name, p] : params) {
    const PickleValue* s = saved.Find(name);
    if (s == nullptr) continue;  // never stepped
    const PickleValue* step = s->Find("step");
    const PickleValue* m = s->Find("exp_avg");
    const PickleValue* v = s->Find("exp_avg_sq");
    if (!step || !m || !v || !step->is_int() || !m->is_tensor() || !v->is_tensor() ||
        m->as_tensor().sizes() != p.sizes() || v->as_tensor().sizes() != p.sizes()) {
      return absl::DataLossError(
          absl::StrCat("checkpoint entry 'optimizer.", name, "' is malformed"));
    }
    auto st = std::make_unique<torch::optim::AdamWParamState>();
    st->step(step->as_int());
    st->exp_avg(m->as_tensor().clone());
    st->exp_avg_sq(v->as_tensor().clone());
    opt.state()[StateKey(p)] = std::move(st);
  }
  return absl::OkStatus();
}

}  // namespace nino::trainer
