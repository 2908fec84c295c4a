#include "nowcaster/job_spec.h"

#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/nino/schedule.h"
#include "proto/graph_spec_proto.h"

namespace nino::nowcaster {
namespace {

absl::Status Bad(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

constexpr double kMinKDecay = 0.01;  // the horizon schedule's exponent p
constexpr double kMaxKDecay = 100.0;

bool IsJobIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == ':' || c == '/';
}

}  // namespace

absl::StatusOr<JobSpec> ValidateJobRequest(const v1::RegisterJobRequest& request,
                                           absl::string_view model_name,
                                           const NiNoConfig& model_config) {
  JobSpec spec;
  const std::string& id = request.job_id();
  if (id.empty() || id.size() > kMaxJobIdBytes) {
    return Bad("job_id",
               absl::StrCat("must have 1..", kMaxJobIdBytes, " characters, has ", id.size()));
  }
  for (char c : id) {
    if (!IsJobIdChar(c)) {
      return Bad("job_id", absl::StrCat("'", id, "' holds a character outside [A-Za-z0-9._:/-]"));
    }
  }
  spec.job_id = id;
  spec.nino_model = std::string(model_name);

  if (request.params_size() == 0) return Bad("params", "empty: the job has no parameters");
  std::vector<std::pair<std::string, std::vector<int64_t>>> named_shapes;
  std::set<std::string> names;
  int64_t total = 0;
  for (int i = 0; i < request.params_size(); ++i) {
    const v1::ParamInfo& p = request.params(i);
    const std::string field = absl::StrCat("params[", i, "]");
    if (p.name().empty()) return Bad(field + ".name", "empty");
    if (!names.insert(p.name()).second) {
      return Bad(field + ".name", absl::StrCat("'", p.name(), "' appears twice"));
    }
    if (p.shape_size() == 0) {
      return Bad(field + ".shape", absl::StrCat("empty for '", p.name(), "' (scalars: [1])"));
    }
    if (!v1::DType_IsValid(p.dtype())) {
      return Bad(field + ".dtype", absl::StrCat("unknown value ", p.dtype()));
    }
    int64_t numel = 1;
    for (int d = 0; d < p.shape_size(); ++d) {
      const int64_t dim = p.shape(d);
      if (dim < 1) {
        return Bad(absl::StrCat(field, ".shape[", d, "]"),
                   absl::StrCat(dim, " for '", p.name(), "': dimensions must be >= 1"));
      }
      if (__builtin_mul_overflow(numel, dim, &numel) || numel > kMaxNumParams) {
        return Bad(field + ".shape",
                   absl::StrCat("'", p.name(), "' has more than ", kMaxNumParams, " elements"));
      }
    }
    total += numel;
    if (total > kMaxNumParams) {
      return Bad("params", absl::StrCat("more than ", kMaxNumParams, " parameters in total"));
    }
    named_shapes.push_back({p.name(), {p.shape().begin(), p.shape().end()}});
  }
  absl::StatusOr<std::vector<ParamSpec>> table = MakeParamTable(named_shapes);
  if (!table.ok()) return Bad("params", table.status().message());
  spec.params = std::move(*table);
  spec.num_params = TotalParams(spec.params);

  // The kind and a description on its own; whether a description fits the parameters is the
  // graph builder's check, run by EstimateJobFootprint before anything is reserved.
  absl::StatusOr<GraphSpec> graph = wire::GraphSpecFromProto(request.graph());
  if (!graph.ok()) return Bad("graph", graph.status().message());
  spec.graph = *graph;

  if (request.ctx() != model_config.ctx) {
    return Bad("ctx", absl::StrCat(request.ctx(), ": model ", model_name, " takes ",
                                   model_config.ctx, " context snapshots"));
  }
  if (request.period() < 1) return Bad("period", absl::StrCat(request.period(), ": must be >= 1"));
  if (request.period() % request.ctx() != 0) {
    return Bad("period", absl::StrCat(request.period(), " is not a multiple of ctx ", request.ctx(),
                                      " (snapshots are period / ctx steps apart)"));
  }
  if (request.max_train_steps() < 1) {
    return Bad("max_train_steps", absl::StrCat(request.max_train_steps(), ": must be >= 1"));
  }
  if (request.max_train_steps() / request.period() > kMaxScheduleLength) {
    return Bad("max_train_steps",
               absl::StrCat(request.max_train_steps(), " / period ", request.period(),
                            " NiNo steps exceed the limit of ", kMaxScheduleLength));
  }
  const double k_decay = request.k_decay() == 0.0 ? 2.0 : request.k_decay();
  // Outside [0.01, 100] the schedule's 40^(1/p) and x^p leave the doubles (found by fuzzing:
  // k_decay = 1e-303 made HorizonSchedule convert NaN to int).
  if (!std::isfinite(k_decay) || k_decay < kMinKDecay || k_decay > kMaxKDecay) {
    return Bad("k_decay", absl::StrCat(request.k_decay(), ": must be in [", kMinKDecay, ", ",
                                       kMaxKDecay, "] (0 = default 2.0)"));
  }
  spec.period = request.period();
  spec.ctx = request.ctx();
  spec.max_train_steps = request.max_train_steps();
  spec.k_decay = k_decay;
  spec.lpe_seed = request.lpe_seed();
  const v1::NowcastTuning& t = request.tuning();
  spec.tuning.edge_sample_ratio = t.edge_sample_ratio();
  spec.tuning.edge_sample_seed = request.lpe_seed();
  spec.tuning.subgraph = t.subgraph();
  spec.tuning.bf16_edge_state = t.bf16_edge_state();
  spec.tuning.bf16_matmul = t.bf16_matmul();
  spec.tuning.chunk_bytes = t.chunk_bytes();
  NowcastEngineOptions checked;  // the engine's own check of the values, named as the field
  if (absl::Status s = ApplyTuning(spec.tuning, model_config, &checked); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("tuning.", s.message()));  // ApplyTuning's code
  }
  spec.seq_len = model_config.seq_len;
  spec.k_schedule = HorizonSchedule(spec.max_train_steps, spec.period, spec.k_decay,
                                    static_cast<int>(model_config.seq_len));
  return spec;
}

}  // namespace nino::nowcaster
