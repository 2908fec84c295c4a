#include "tools/load_test_jobs.h"

#include <chrono>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "tools/bench_models.h"
#include "trainer/models.h"

namespace nino::load_test {
namespace {

// H of "mlp<H>", or 0 if `kind` is not of that form.
int64_t MlpWidth(const std::string& kind) {
  absl::string_view rest = kind;
  int64_t width = 0;
  if (!absl::ConsumePrefix(&rest, "mlp") || !absl::SimpleAtoi(rest, &width)) return 0;
  return width >= 1 && width <= 4096 ? width : 0;
}

bool IsBenchModel(const std::string& kind) {
  for (const std::string& n : bench::BenchModelNames()) {
    if (n == kind) return true;
  }
  return false;
}

// The layout and initial parameters of `kind` (LibTorch's generator seeded with `seed`).
absl::StatusOr<bench::BenchModel> MakeLayout(const std::string& kind, uint64_t seed) {
  if (IsBenchModel(kind)) return bench::MakeBenchModel(kind, seed);
  const int64_t width = MlpWidth(kind);
  if (width == 0) return absl::InvalidArgumentError(absl::StrCat("unknown job kind '", kind, "'"));
  torch::manual_seed(seed);
  torch::NoGradGuard no_grad;
  trainer::VisionNetOptions o;
  o.hid = {width, width, width};
  o.conv = false;
  trainer::VisionNet net(o);
  bench::BenchModel b;
  b.name = kind;
  std::vector<torch::Tensor> flat;
  for (const auto& p : net->named_parameters()) {
    b.shapes.push_back({p.key(), p.value().sizes().vec()});
    flat.push_back(p.value().detach().reshape({-1}).to(torch::kFloat32));
  }
  b.init = torch::cat(flat);
  return b;
}

}  // namespace

absl::Status CheckKind(const std::string& kind) {
  if (IsBenchModel(kind) || MlpWidth(kind) > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown job kind '", kind, "' (known: ", absl::StrJoin(bench::BenchModelNames(), ", "),
      ", mlp<H> for 784-H-H-H-10)"));
}

absl::StatusOr<LoadJob> MakeLoadJob(const std::string& name, const std::string& kind, uint64_t seed,
                                    int cases, const std::shared_ptr<const NiNoModel>& model) {
  if (absl::Status s = CheckKind(kind); !s.ok()) return s;
  if (cases < 1) {
    return absl::InvalidArgumentError(absl::StrCat("cases: ", cases, ", expected >= 1"));
  }
  absl::StatusOr<bench::BenchModel> layout = MakeLayout(kind, seed);
  if (!layout.ok()) return layout.status();
  absl::StatusOr<std::vector<ParamSpec>> table = MakeParamTable(layout->shapes);
  if (!table.ok()) return table.status();

  LoadJob job;
  job.name = name;
  job.kind = kind;
  job.seed = seed;
  job.shapes = layout->shapes;
  job.graph = layout->graph;
  job.num_params = TotalParams(*table);

  // Exactly what the nowcaster builds for RegisterJob(lpe_seed = seed, default tuning).
  NowcastTuning tuning;
  tuning.edge_sample_seed = seed;
  NowcastEngineOptions options;
  options.lpe.sign_seed = seed;
  if (absl::Status s = ApplyTuning(tuning, model->config(), &options); !s.ok()) return s;
  try {
    absl::StatusOr<std::unique_ptr<NowcastEngine>> engine =
        NowcastEngine::Create(model, *table, job.graph, options);
    if (!engine.ok()) return engine.status();
    const int64_t seq_len = model->config().seq_len;
    for (int c = 0; c < cases; ++c) {
      // Seeds of different jobs' cases never coincide (job seeds differ, c < 1000).
      torch::Tensor states = bench::SmoothTrajectory(*table, layout->init, seed * 1000 + c);
      const int k = static_cast<int>(1 + (seed * 7 + c * 13) % seq_len);
      const auto t0 = std::chrono::steady_clock::now();
      absl::StatusOr<torch::Tensor> prediction = (*engine)->Nowcast(states, k);
      if (!prediction.ok()) return prediction.status();
      job.inprocess_step_s +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / cases;
      job.contexts.push_back(states.contiguous());
      job.ks.push_back(k);
      job.expected.push_back(prediction->contiguous());
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("LibTorch, job ", name, ": ", e.what_without_backtrace()));
  }
  return job;
}

Verdict Compare(const torch::Tensor& got, const torch::Tensor& expected, double tolerance) {
  Verdict v;
  if (!got.defined() || got.sizes() != expected.sizes() || got.dtype() != expected.dtype()) {
    v.max_abs_diff = std::numeric_limits<double>::infinity();
    return v;
  }
  v.bitwise = torch::equal(got, expected);
  v.max_abs_diff = v.bitwise ? 0.0 : (got - expected).abs().max().item<double>();
  v.matches = tolerance > 0 ? v.max_abs_diff <= tolerance : v.bitwise;
  return v;
}

std::string FindOwner(const torch::Tensor& got, const std::vector<LoadJob>& jobs,
                      double tolerance) {
  for (const LoadJob& job : jobs) {
    for (size_t c = 0; c < job.expected.size(); ++c) {
      if (Compare(got, job.expected[c], tolerance).matches) {
        return absl::StrCat(job.name, " case ", c);
      }
    }
  }
  return "";
}

}  // namespace nino::load_test
