// footprint_bench: a benchmark model's NowcastEngine memory, estimated from its layout
// (common/nino/memory_estimate.h, what the nowcaster reserves) and measured as the process's
// resident memory; prints one JSON line.
//
//   footprint_bench --model {fm16,fm32,mlp512,lm,gpt2-3-64,gpt2-4-128,llama-tiny}
//                   [--nino_ckpt PATH] [--threads N] [tuning flags: --bf16_edge_state ...]
//
// Measured: after a warm-up nowcast on a small model (thread pools, BLAS buffers: once per
// process, part of the daemon's baseline) and malloc_trim (the nowcaster trims after every
// build and nowcast), VmRSS is the baseline; VmHWM is reset
// (/proc/self/clear_refs) and the engine is built, then one nowcast runs on a freshly stacked
// [5, P] context (as the nowcaster's Predict does). build_peak = VmHWM after the build minus
// the baseline, engine_peak = VmHWM after the nowcast minus the baseline: the most the job's
// engine added to the process at any time, to compare with the estimate's engine_bytes.
#include <torch/torch.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "common/nino/memory_estimate.h"
#include "common/nino/nino_model.h"
#include "common/nino/nowcast_engine.h"
#include "common/nino/tuning_flags.h"
#include "common/runtime/allocator.h"
#include "common/runtime/threads.h"
#include "tools/bench_models.h"

ABSL_FLAG(std::string, model, "fm16",
          "fm16, fm32, mlp512, lm, gpt2-3-64, gpt2-4-128 or llama-tiny");
ABSL_FLAG(std::string, nino_ckpt, "../shared/reference/checkpoints/nino_no_posw.pt",
          "NiNo checkpoint");
ABSL_FLAG(int, threads, 0, "LibTorch intra-op threads (0 = all cores)");

namespace {

constexpr double kMiB = 1024.0 * 1024.0;

// A field of /proc/self/status in bytes ("VmRSS", "VmHWM"), or -1.
int64_t StatusBytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) != 0) continue;
    const size_t begin = line.find_first_of("0123456789");
    const size_t end = line.find(' ', begin);
    int64_t kib = 0;
    if (begin == std::string::npos || !absl::SimpleAtoi(line.substr(begin, end - begin), &kib)) {
      return -1;
    }
    return kib * 1024;
  }
  return -1;
}

// As the nowcaster does after every build and nowcast: free heap back to the kernel.
void ReturnFreedHeap() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

void ResetPeak() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
}

// One nowcast of a small layout: initialises what every later nowcast reuses.
absl::Status WarmUp(const std::shared_ptr<const nino::NiNoModel>& model) {
  auto table = nino::MakeParamTable({{"fc.0.weight", {64, 128}}, {"fc.0.bias", {64}}});
  if (!table.ok()) return table.status();
  auto engine = nino::NowcastEngine::Create(model, *table, nino::GraphSpec{});
  if (!engine.ok()) return engine.status();
  const torch::Tensor states = torch::randn({5, nino::TotalParams(*table)}) * 0.1;
  return (*engine)->Nowcast(states, 10).status();
}

}  // namespace

int main(int argc, char** argv) {
  nino::runtime::TuneAllocatorForTensors();  // as the nowcaster does
  absl::SetProgramUsageMessage("Estimated vs measured memory of one NiNo engine (JSON line).");
  absl::ParseCommandLine(argc, argv);
  at::set_num_threads(nino::runtime::ThreadsOrAllCores(absl::GetFlag(FLAGS_threads)));
  torch::NoGradGuard no_grad;

  auto bm = nino::bench::MakeBenchModel(absl::GetFlag(FLAGS_model), 0);
  if (!bm.ok()) return nino::bench::Fail("--model", bm.status());
  auto table = nino::MakeParamTable(bm->shapes);
  if (!table.ok()) return nino::bench::Fail("parameter table", table.status());
  torch::Tensor trajectory = nino::bench::SmoothTrajectory(*table, bm->init, 0);
  bm->init = torch::Tensor();
  auto loaded = nino::NiNoModel::Load(absl::GetFlag(FLAGS_nino_ckpt));
  if (!loaded.ok()) return nino::bench::Fail("--nino_ckpt", loaded.status());
  auto model = std::make_shared<const nino::NiNoModel>(std::move(*loaded));
  if (absl::Status s = WarmUp(model); !s.ok()) return nino::bench::Fail("warm-up", s);

  nino::NowcastEngineOptions options;
  const nino::NowcastTuning tuning = nino::TuningFromFlags(0);
  if (absl::Status s = nino::ApplyTuning(tuning, model->config(), &options); !s.ok()) {
    return nino::bench::Fail("tuning flags", s);
  }
  auto est = nino::EstimateNowcastMemory(*table, bm->graph, model->config(), options);
  if (!est.ok()) return nino::bench::Fail("estimate", est.status());

  ReturnFreedHeap();
  const int64_t baseline = StatusBytes("VmRSS");
  ResetPeak();
  auto engine = nino::NowcastEngine::Create(model, *table, bm->graph, options);
  if (!engine.ok()) return nino::bench::Fail("engine", engine.status());
  const int64_t build_peak = StatusBytes("VmHWM") - baseline;
  ReturnFreedHeap();
  const int64_t kept = StatusBytes("VmRSS") - baseline;
  {
    torch::Tensor context = trajectory.clone();  // the Predict's stacked snapshots
    auto p = (*engine)->Nowcast(context, 10);
    if (!p.ok()) return nino::bench::Fail("nowcast", p.status());
  }
  const int64_t engine_peak = StatusBytes("VmHWM") - baseline;
  const double ratio = static_cast<double>(est->engine_bytes()) / engine_peak;
  std::printf(
      "{\"model\":\"%s\",\"params\":%lld,\"nodes\":%lld,\"edges\":%lld,\"parts\":%d,"
      "\"bf16_edge_state\":%s,\"edge_sample_ratio\":%g,\"chunk_rows\":%lld,"
      "\"est_graph_mib\":%.1f,\"est_build_mib\":%.1f,\"est_nowcast_mib\":%.1f,"
      "\"est_heap_slack_mib\":%.1f,"
      "\"est_engine_mib\":%.1f,\"rss_after_build_mib\":%.1f,\"rss_build_peak_mib\":%.1f,"
      "\"rss_engine_peak_mib\":%.1f,\"estimate_over_measured\":%.3f}\n",
      bm->name.c_str(), static_cast<long long>(nino::TotalParams(*table)),
      static_cast<long long>((*engine)->total_nodes()),
      static_cast<long long>((*engine)->total_edges()), (*engine)->num_parts(),
      tuning.bf16_edge_state ? "true" : "false", tuning.edge_sample_ratio,
      static_cast<long long>(options.forward.chunk_rows), est->graph_bytes / kMiB,
      est->build_bytes / kMiB, est->nowcast_bytes / kMiB, est->heap_slack_bytes / kMiB,
      est->engine_bytes() / kMiB, kept / kMiB, build_peak / kMiB, engine_peak / kMiB, ratio);
  return 0;
}
