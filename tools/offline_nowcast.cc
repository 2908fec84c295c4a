#include "tools/offline_nowcast.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/io/torch_file.h"
#include "common/nino/model_catalog.h"
#include "common/nino/model_description.h"
#include "common/nino/nino_model.h"
#include "common/nino/nowcast_engine.h"
#include "common/nino/schedule.h"

namespace nino::tools {
namespace {

using io::PickleValue;

// The loaded file and where its state dict lives.
struct StateFile {
  std::string path;
  PickleValue top;
  int model_index = -1;  // the state dict: top["model"] (index into top's items), or -1: top
  PickleValue& dict() {
    return model_index < 0 ? top : top.mutable_dict_items()[model_index].second;
  }
  const PickleValue& dict() const {
    return model_index < 0 ? top : top.dict_items()[model_index].second;
  }
};

absl::StatusOr<StateFile> ReadState(const std::string& path) {
  StateFile f;
  f.path = path;
  auto top = io::LoadTorchFile(path);
  if (!top.ok()) return top.status();
  f.top = std::move(*top);
  if (!f.top.is_dict()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": expected a state dict or a dict with \"model\", got ", f.top.kind_name()));
  }
  const auto& items = f.top.dict_items();
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].first.is_string() && items[i].first.as_string() == "model" &&
        items[i].second.is_dict()) {
      f.model_index = static_cast<int>(i);
    }
  }
  for (const auto& [k, v] : f.dict().dict_items()) {
    if (!k.is_string() || !v.is_tensor()) {
      return absl::InvalidArgumentError(absl::StrCat(path,
                                                     ": the state dict holds a non-tensor entry ",
                                                     k.DebugString(1), " (", v.kind_name(), ")"));
    }
  }
  return f;
}

absl::StatusOr<ModelDescription> ReadDescription(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("model description ", path, ": cannot be read"));
  }
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<ModelDescription> d = ModelDescriptionFromJson(text.str());
  if (!d.ok()) {
    return absl::Status(d.status().code(),
                        absl::StrCat("model description ", path, ": ", d.status().message()));
  }
  return d;
}

// The graph construction the options ask for (kAuto still unresolved).
absl::StatusOr<GraphSpec> RequestedGraph(const OfflineNowcastOptions& o) {
  if (o.model_description.empty()) {
    if (o.graph == "described") {
      return absl::InvalidArgumentError("graph kind described needs a model description file");
    }
    return ParseGraphKind(o.graph, o.num_heads, o.num_kv_heads);
  }
  if (o.graph != "auto" && o.graph != "described") {
    return absl::InvalidArgumentError(
        absl::StrCat("graph kind ", o.graph,
                     " and a model description exclude each other (the "
                     "description's graph is kind described)"));
  }
  absl::StatusOr<ModelDescription> d = ReadDescription(o.model_description);
  if (!d.ok()) return d.status();
  GraphSpec spec;
  spec.kind = GraphSpec::Kind::kDescribed;
  spec.description = std::make_shared<const ModelDescription>(std::move(*d));
  return spec;
}

bool IsBuffer(const std::string& name, const torch::Tensor& t) {
  return !t.is_floating_point() || absl::EndsWith(name, ".running_mean") ||
         absl::EndsWith(name, ".running_var") || absl::EndsWith(name, ".num_batches_tracked");
}

}  // namespace

absl::StatusOr<OfflineNowcastResult> RunOfflineNowcast(const OfflineNowcastOptions& o) {
  if (o.out.empty()) return absl::InvalidArgumentError("no output path (--out)");
  if (o.k < 0 || o.k > 40)
    return absl::InvalidArgumentError(absl::StrCat("k must be in 1..40 (0: schedule), got ", o.k));
  if (o.k == 0 && o.step <= 0) {
    return absl::InvalidArgumentError(
        "give the horizon k, or the training step of the newest state for the schedule");
  }
  if (o.period <= 0 || o.max_train_steps <= 0)
    return absl::InvalidArgumentError("period and max_train_steps must be > 0");
  absl::StatusOr<ResolvedModel> resolved = ResolveModel(o.nino_model, o.allow_download);
  if (!resolved.ok()) return resolved.status();
  absl::StatusOr<NiNoModel> loaded = LoadModel(*resolved);
  if (!loaded.ok()) return loaded.status();
  auto model = std::make_shared<const NiNoModel>(std::move(*loaded));
  const int64_t ctx = model->config().ctx;
  if (static_cast<int64_t>(o.states.size()) != ctx) {
    return absl::InvalidArgumentError(
        absl::StrCat("this NiNo takes ", ctx, " states (oldest first), got ", o.states.size()));
  }
  std::error_code ec;
  const auto out_abs = std::filesystem::weakly_canonical(o.out, ec);
  for (const auto& s : o.states) {
    if (!ec && std::filesystem::weakly_canonical(s, ec) == out_abs) {
      return absl::InvalidArgumentError(
          absl::StrCat("the output ", o.out, " would overwrite the input ", s));
    }
  }

  std::vector<StateFile> files;
  for (const auto& path : o.states) {
    auto f = ReadState(path);
    if (!f.ok()) return f.status();
    files.push_back(std::move(*f));
  }
  // The parameter layout: the newest file's floating-point entries, in order.
  const StateFile& last = files.back();
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  std::map<std::string, torch::Tensor> last_params;
  OfflineNowcastResult result;
  for (const auto& [k, v] : last.dict().dict_items()) {
    const torch::Tensor& t = v.as_tensor();
    if (IsBuffer(k.as_string(), t)) {
      result.kept.push_back(k.as_string());
      continue;
    }
    shapes.push_back({k.as_string(), t.sizes().vec()});
    last_params[k.as_string()] = t;
  }
  if (shapes.empty())
    return absl::InvalidArgumentError(absl::StrCat(last.path, ": no floating-point parameters"));

  auto spec = RequestedGraph(o);
  if (!spec.ok()) return spec.status();
  {
    auto table = MakeParamTable(shapes);
    if (!table.ok()) return table.status();
    if (spec->kind == GraphSpec::Kind::kAuto) {
      auto inferred = InferGraphSpec(*table, spec->num_heads, spec->num_kv_heads);
      if (!inferred.ok()) return inferred.status();
      spec = *inferred;
    }
  }
  // GPT-2 ties lm_head to wte: not a parameter of its own (named_parameters lists it once).
  std::string tied_lm_head, wte_name;
  if (spec->kind == GraphSpec::Kind::kGpt2) {
    for (const auto& [n, s] : shapes) {
      if (absl::EndsWith(n, "wte.weight")) wte_name = n;
    }
    for (const auto& [n, s] : shapes) {
      if (absl::EndsWith(n, "lm_head.weight") && !wte_name.empty()) {
        bool same = true;
        for (const auto& f : files) {
          const PickleValue* a = f.dict().Find(n);
          const PickleValue* b = f.dict().Find(wte_name);
          same = same && a && b && a->as_tensor().sizes() == b->as_tensor().sizes() &&
                 torch::equal(a->as_tensor(), b->as_tensor());
        }
        if (same) tied_lm_head = n;
      }
    }
    if (!tied_lm_head.empty()) {
      shapes.erase(std::remove_if(shapes.begin(), shapes.end(),
                                  [&](const auto& p) { return p.first == tied_lm_head; }),
                   shapes.end());
      result.kept.push_back(tied_lm_head + " (tied to " + wte_name + ")");
    }
  }
  auto table = MakeParamTable(shapes);
  if (!table.ok()) return table.status();

  // States [ctx, P]: every file must hold the same parameters with the same shapes, finite.
  std::vector<torch::Tensor> rows;
  for (const auto& f : files) {
    std::vector<torch::Tensor> flat;
    for (const auto& [n, s] : shapes) {
      const PickleValue* v = f.dict().Find(n);
      if (!v)
        return absl::InvalidArgumentError(absl::StrCat(f.path, ": missing parameter '", n, "'"));
      const torch::Tensor& t = v->as_tensor();
      if (t.sizes().vec() != s) {
        return absl::InvalidArgumentError(
            absl::StrCat(f.path, ": parameter '", n, "' has shape ", c10::str(t.sizes()),
                         ", the newest state has ", c10::str(torch::IntArrayRef(s))));
      }
      torch::Tensor x = t.to(torch::kFloat32).reshape({-1});
      if (!torch::isfinite(x).all().item<bool>()) {
        return absl::InvalidArgumentError(
            absl::StrCat(f.path, ": parameter '", n, "' holds NaN or Inf"));
      }
      flat.push_back(x);
    }
    for (const auto& [k, v] : f.dict().dict_items()) {
      const std::string& n = k.as_string();
      if (!last_params.count(n) && !IsBuffer(n, v.as_tensor())) {
        return absl::InvalidArgumentError(
            absl::StrCat(f.path, ": parameter '", n, "' is not in the newest state"));
      }
    }
    rows.push_back(torch::cat(flat));
  }
  const torch::Tensor states = torch::stack(rows);

  result.k = o.k > 0 ? o.k
                     : HorizonAt(HorizonSchedule(o.max_train_steps, o.period, o.k_decay,
                                                 model->config().seq_len),
                                 o.step - 1, o.period);
  NowcastEngineOptions eo;
  eo.lpe.sign_seed = o.lpe_seed;
  if (absl::Status t = ApplyTuning(o.tuning, model->config(), &eo); !t.ok()) return t;
  auto engine = NowcastEngine::Create(model, *table, *spec, eo);
  if (!engine.ok() && spec->kind == GraphSpec::Kind::kDescribed) {
    return absl::Status(engine.status().code(),
                        absl::StrCat("the graph of model description ", o.model_description, ": ",
                                     engine.status().message()));
  }
  if (!engine.ok()) return engine.status();
  auto pred = (*engine)->Nowcast(states, result.k);
  if (!pred.ok()) return pred.status();
  result.graph = *spec;
  result.num_params = TotalParams((*engine)->params());
  result.num_edges = (*engine)->total_edges();
  result.mean_abs_change = (*pred - states[ctx - 1]).abs().mean().item<double>();

  // The newest file with its parameters replaced, each in its own dtype.
  std::map<std::string, torch::Tensor> predicted;
  for (const auto& p : *table) {
    const torch::Tensor& like = last_params.at(p.name);
    predicted[p.name] =
        pred->narrow(0, p.offset, p.numel).reshape(like.sizes()).to(like.dtype()).contiguous();
  }
  if (!tied_lm_head.empty()) predicted[tied_lm_head] = predicted.at(wte_name);
  StateFile out = std::move(files.back());
  for (auto& [k, v] : out.dict().mutable_dict_items()) {
    auto it = predicted.find(k.as_string());
    if (it != predicted.end()) v = PickleValue::FromTensor(it->second);
  }
  absl::Status saved = io::SaveTorchFile(o.out, out.top);
  if (!saved.ok()) return saved;
  return result;
}

}  // namespace nino::tools
