#include "metatrain/trajectory_windows.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace nino::metatrain {
namespace {

// Parameter table from a manifest.
absl::StatusOr<std::vector<ParamSpec>> ManifestParams(const nlohmann::json& m) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> named;
  for (const auto& p : m.at("params")) {
    named.push_back({p.at("name").get<std::string>(), p.at("shape").get<std::vector<int64_t>>()});
  }
  return MakeParamTable(named);
}

// Identifies equal graphs: names and shapes of the (reduced) layout, kind, heads, scaling.
std::string LayoutKey(const std::vector<ParamSpec>& params, const GraphSpec& spec,
                      bool global_scale) {
  std::string key;
  for (const auto& p : params)
    absl::StrAppend(&key, p.name, ":", nlohmann::json(p.shape).dump(), ";");
  absl::StrAppend(&key, GraphKindName(spec.kind), "/", spec.num_heads, "/", spec.num_kv_heads,
                  global_scale ? "/global" : "");
  return key;
}

// The official quirk's condition: the first tensor is GPT-2's word embedding.
bool FirstTensorIsWte(const std::vector<ParamSpec>& params) {
  return !params.empty() && absl::EndsWith(params.front().name, "wte.weight");
}

}  // namespace

std::vector<std::string> CompleteDatasets(const std::string& root) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(root, ec)) {
    const auto manifest = entry.path() / "manifest.json";
    if (!std::filesystem::is_regular_file(manifest)) continue;
    std::ifstream in(manifest);
    nlohmann::json m = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (m.is_object() && m.value("complete", false)) out.push_back(entry.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<std::unique_ptr<TrajectoryWindows>> TrajectoryWindows::Open(
    const std::vector<std::string>& dirs, const WindowOptions& options) {
  if (dirs.empty()) return absl::InvalidArgumentError("no trajectory datasets given");
  std::unique_ptr<TrajectoryWindows> w(new TrajectoryWindows(options));
  for (const auto& dir : dirs) {
    absl::Status s = w->Add(dir);
    if (!s.ok()) return s;
  }
  return w;
}

absl::Status TrajectoryWindows::Add(const std::string& dir) {
  auto reader = trainer::TrajectoryReader::Open(dir);
  if (!reader.ok()) return reader.status();
  const nlohmann::json& m = (*reader)->manifest();
  if (!m.value("complete", false))
    return absl::FailedPreconditionError(absl::StrCat(dir, ": the dataset is not complete"));
  const int64_t every = m.value("every", int64_t{0});
  if (every <= 0 || options_.steps_apart % every != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, ": rows every ", every, " steps do not divide ", options_.steps_apart));
  }
  auto params = ManifestParams(m);
  if (!params.ok()) return params.status();
  if (TotalParams(*params) != (*reader)->num_params()) {
    return absl::DataLossError(absl::StrCat(dir, ": the manifest's parameter table has ",
                                            TotalParams(*params), " values, the rows ",
                                            (*reader)->num_params()));
  }
  const auto& g = m.at("graph");
  auto spec = ParseGraphKind(g.value("kind", std::string("auto")), g.value("num_heads", 0),
                             g.value("num_kv_heads", 0));
  if (!spec.ok()) return spec.status();
  if (spec->kind == GraphSpec::Kind::kAuto) {
    auto inferred = InferGraphSpec(*params, g.value("num_heads", 0), g.value("num_kv_heads", 0));
    if (!inferred.ok()) return inferred.status();
    spec = *inferred;
  }
  auto tokens = TokenSubsample::Create(*params, *spec, options_.wte_size);
  if (!tokens.ok()) {
    return absl::Status(tokens.status().code(), absl::StrCat(dir, ": ", tokens.status().message()));
  }
  const std::vector<ParamSpec>& layout = tokens->reduced_params();
  const bool global_scale = options_.lm_global_scale && FirstTensorIsWte(layout);
  const std::string key = LayoutKey(layout, *spec, global_scale);
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {  // built once per reduced layout, whatever the token subsets
    auto graph = LayoutGraph::Create(layout, *spec, options_.lpe_dim, global_scale);
    if (!graph.ok()) {
      return absl::Status(graph.status().code(), absl::StrCat(dir, ": ", graph.status().message()));
    }
    it = graphs_.emplace(key, *graph).first;
  }
  Trajectory t;
  t.dir = dir;
  t.stride = options_.steps_apart / every;
  const int64_t need =
      (options_.ctx + std::min(options_.seq_len, 2 * options_.ctx) + options_.shifts) * t.stride;
  t.max_start = (*reader)->rows() - need;
  if (t.max_start < 1) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, ": ", (*reader)->rows(), " rows, windows need more than ", need));
  }
  t.reader = std::move(*reader);
  t.graph = it->second;
  t.tokens = std::make_shared<const TokenSubsample>(std::move(*tokens));
  trajectories_.push_back(std::move(t));
  return absl::OkStatus();
}

SliceRef TrajectoryWindows::SampleSlice(std::mt19937_64* rng) const {
  SliceRef s;
  s.trajectory = std::uniform_int_distribution<int64_t>(0, num_trajectories() - 1)(*rng);
  s.start_row =
      std::uniform_int_distribution<int64_t>(0, trajectories_[s.trajectory].max_start - 1)(*rng);
  if (options_.lpe_dim > 0) {
    std::vector<float> signs(options_.lpe_dim);
    for (auto& v : signs) v = std::bernoulli_distribution(0.5)(*rng) ? 1.0f : -1.0f;
    s.pos_sign = torch::tensor(signs);
  }
  const TokenSubsample& tokens = *trajectories_[s.trajectory].tokens;
  if (tokens.active()) s.token_ids = tokens.Draw(rng);
  return s;
}

std::vector<SliceRef> TrajectoryWindows::EvenSlices(int64_t per_trajectory) const {
  std::vector<SliceRef> out;
  for (int64_t t = 0; t < num_trajectories(); ++t) {
    const int64_t range = trajectories_[t].max_start;
    for (int64_t i = 0; i < per_trajectory; ++i) {
      SliceRef s;
      s.trajectory = t;
      s.start_row = per_trajectory == 1 ? 0 : (range - 1) * i / (per_trajectory - 1);
      const TokenSubsample& tokens = *trajectories_[t].tokens;
      if (tokens.active()) {
        std::mt19937_64 rng(options_.eval_seed + 1000003ull * static_cast<uint64_t>(t) +
                            static_cast<uint64_t>(i));
        s.token_ids = tokens.Draw(&rng);
      }
      out.push_back(s);
    }
  }
  return out;
}

torch::Tensor TrajectoryWindows::SliceStates(const SliceRef& slice) const {
  const Trajectory& t = trajectories_.at(slice.trajectory);
  const int64_t rows = t.reader->rows();
  TORCH_CHECK(slice.start_row >= 0 && slice.start_row < rows, "slice start ", slice.start_row,
              " is outside the ", rows, " rows of ", t.dir);
  // The slice: up to seq_len + ctx states, `stride` rows apart.
  const int64_t n =
      std::min(options_.ctx + options_.seq_len, (rows - 1 - slice.start_row) / t.stride + 1);
  torch::Tensor idx = torch::arange(n, torch::kInt64) * t.stride + slice.start_row;
  torch::Tensor states = t.reader->states().index_select(0, idx);
  if (t.tokens->active()) {
    states = states.index_select(1, t.tokens->FlatRows(TokenIds(slice)));
  } else {
    TORCH_CHECK(!slice.token_ids.defined(), t.dir, " is not subsampled: the slice has token ids");
  }
  return states.to(torch::kFloat32);
}

torch::Tensor TrajectoryWindows::TokenIds(const SliceRef& slice) const {
  const TokenSubsample& tokens = *trajectories_.at(slice.trajectory).tokens;
  if (slice.token_ids.defined()) return slice.token_ids;
  return torch::arange(tokens.wte_size(), torch::kInt64);
}

std::vector<GraphSample> TrajectoryWindows::Windows(const SliceRef& slice) const {
  const Trajectory& t = trajectories_.at(slice.trajectory);
  const int64_t C = options_.ctx, T = options_.seq_len;
  const torch::Tensor states = SliceStates(slice);
  const int64_t n = states.size(0);
  const torch::Tensor pos_w = t.tokens->active()
                                  ? TokenSubsample::PosW(t.graph->pos_w(), TokenIds(slice))
                                  : t.graph->pos_w();
  std::vector<GraphSample> out;
  for (int64_t shift = 0; shift < options_.shifts; ++shift) {
    const int64_t k = std::min(T, n - shift - C);  // future states of this window
    if (k < 1) break;
    out.push_back(t.graph->MakeSample(states.narrow(0, shift, C), states.narrow(0, shift + C, k), T,
                                      slice.pos_sign, pos_w));
  }
  return out;
}

}  // namespace nino::metatrain
