// nino_bench: one NiNo step on a benchmark model, timed; prints one JSON line.
//
//   nino_bench --model {fm16,fm32,mlp512,lm,gpt2-3-64,gpt2-4-128,llama-tiny} [--nino_ckpt PATH]
//              [--device cpu|cuda] [--threads N] [--repeat N] [--k K] [--chunk_edges N]
//
// graph_build_s: neural graph + gather/scatter indices + positional encoding (NowcastEngine::
// Create); step_s: one NowcastEngine::Nowcast (scaling, gather, the NiNo network, scatter,
// unscaling), median over --repeat runs after one warm-up; peak_rss_gib: the process's peak
// resident memory (includes the benchmark's own copy of the states); peak_gpu_gib: the CUDA
// caching allocator's peak (CUDA builds only).
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#ifdef NINO_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
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
ABSL_FLAG(std::string, device, "cpu", "cpu or cuda");
ABSL_FLAG(int, threads, 0, "LibTorch intra-op threads (0 = all cores)");
ABSL_FLAG(int, repeat, 3, "timed steps after one warm-up");
ABSL_FLAG(int, k, 40, "horizon");
ABSL_FLAG(int64_t, chunk_edges, 0,
          "edges per chunk of per-edge work (0 = the checkpoint's 1e6; on CPU at most 16384)");
ABSL_FLAG(uint64_t, seed, 0, "seed of the model and the trajectory");
ABSL_FLAG(bool, floor, true,
          "also measure this machine's float32 GEMM rate and report the arithmetic floor");

namespace {

void Sync(const torch::Device& d) {
#ifdef NINO_WITH_CUDA
  if (d.is_cuda()) torch::cuda::synchronize(d.index() < 0 ? 0 : d.index());
#else
  (void)d;
#endif
}

// Floating-point operations of one GNN NiNo step as computed here (multiply-add = 2): per edge
// edge_proj (ctx*F -> h), per active message-passing layer the edge encoder (h -> 2h), the
// message (3h) and its sum (h), the edge update (two h x h linears, 2 gathered adds, SiLU),
// then the head (h -> h, h -> F); per node the 7 h x h projections of each active layer.
double GnnFlops(const nino::NiNoConfig& c, int64_t E, int64_t N, int64_t F) {
  const double h = static_cast<double>(c.hid), layers = static_cast<double>(c.layers - 1);
  const double per_edge =
      2.0 * c.ctx * F * h + h + layers * (8 * h * h + 8 * h) + 2 * h * h + h + 2 * h * F;
  const double per_node = 2.0 * c.lpe * h + layers * (14 * h * h + 4 * h);
  return per_edge * static_cast<double>(E) + per_node * static_cast<double>(N);
}

// Float32 GEMM rate of this machine at the current thread count, GFLOP/s: the shape of the
// step's dominant products ([rows, 128] x [128, 128]).
double GemmGflops(const torch::Device& device) {
  torch::NoGradGuard no_grad;
  const int64_t rows = 1 << 16, h = 128;
  torch::Tensor a = torch::randn({rows, h}, torch::TensorOptions().device(device));
  torch::Tensor w = torch::randn({h, h}, torch::TensorOptions().device(device));
  torch::Tensor out = torch::mm(a, w);
  Sync(device);
  double best = 0;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 4; ++i) torch::mm_out(out, a, w);
    Sync(device);
    best = std::max(best, 4 * 2.0 * rows * h * h / nino::bench::SecondsSince(t0) / 1e9);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  nino::runtime::TuneAllocatorForTensors();
  absl::SetProgramUsageMessage("Times one NiNo step on a benchmark model; prints one JSON line.");
  absl::ParseCommandLine(argc, argv);
  const int threads = nino::runtime::ThreadsOrAllCores(absl::GetFlag(FLAGS_threads));
  at::set_num_threads(threads);
  const std::string dev = absl::GetFlag(FLAGS_device);
  if (dev != "cpu" && dev.rfind("cuda", 0) != 0) {
    return nino::bench::Fail(
        "--device", absl::InvalidArgumentError("must be cpu or cuda[:N], got '" + dev + "'"));
  }
#ifndef NINO_WITH_CUDA
  if (dev != "cpu") {
    return nino::bench::Fail(
        "--device",
        absl::FailedPreconditionError("this build has no CUDA (build against a CUDA LibTorch)"));
  }
#endif
  const torch::Device device(dev);
  const int repeat = std::max(1, absl::GetFlag(FLAGS_repeat));
  const int k = absl::GetFlag(FLAGS_k);
  const uint64_t seed = absl::GetFlag(FLAGS_seed);

  auto bm = nino::bench::MakeBenchModel(absl::GetFlag(FLAGS_model), seed);
  if (!bm.ok()) return nino::bench::Fail("--model", bm.status());
  auto table = nino::MakeParamTable(bm->shapes);
  if (!table.ok()) return nino::bench::Fail("parameter table", table.status());
  torch::Tensor states = nino::bench::SmoothTrajectory(*table, bm->init, seed);
  bm->init = torch::Tensor();
  auto loaded = nino::NiNoModel::Load(absl::GetFlag(FLAGS_nino_ckpt));
  if (!loaded.ok()) return nino::bench::Fail("--nino_ckpt", loaded.status());
  if (absl::GetFlag(FLAGS_chunk_edges) > 0)
    loaded->set_chunk_size(absl::GetFlag(FLAGS_chunk_edges));
  loaded->To(device);
  auto model = std::make_shared<const nino::NiNoModel>(std::move(*loaded));

  nino::NowcastEngineOptions eo;
  eo.device = device;
  eo.lpe.sign_seed = seed;
  if (absl::Status t = nino::ApplyTuning(nino::TuningFromFlags(seed), model->config(), &eo);
      !t.ok()) {
    return nino::bench::Fail("tuning flags", t);
  }
  auto t0 = std::chrono::steady_clock::now();
  auto engine = nino::NowcastEngine::Create(model, *table, bm->graph, eo);
  if (!engine.ok()) return nino::bench::Fail("engine", engine.status());
  Sync(device);
  const double build_s = nino::bench::SecondsSince(t0);

  std::vector<double> wall, cpu;
  torch::Tensor pred;
  for (int r = 0; r <= repeat; ++r) {
    t0 = std::chrono::steady_clock::now();
    const double c0 = nino::bench::ProcessCpuSeconds();
    auto p = (*engine)->Nowcast(states, k);
    Sync(device);
    if (!p.ok()) return nino::bench::Fail("nowcast", p.status());
    wall.push_back(nino::bench::SecondsSince(t0));
    cpu.push_back(nino::bench::ProcessCpuSeconds() - c0);
    pred = *p;
  }
  const double first = wall.front();
  std::vector<double> w(wall.begin() + 1, wall.end()), c(cpu.begin() + 1, cpu.end());
  std::sort(w.begin(), w.end());
  std::sort(c.begin(), c.end());
  double peak_gpu = 0;
#ifdef NINO_WITH_CUDA
  if (device.is_cuda()) {
    const auto stats =
        c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
    peak_gpu = stats
                   .allocated_bytes[static_cast<size_t>(
                       c10::cuda::CUDACachingAllocator::StatType::AGGREGATE)]
                   .peak /
               double(1 << 30);
  }
#endif
  const auto& g = (*engine)->graph();
  const nino::NiNoConfig& cfg = (*engine)->model().config();
  const int64_t edges = (*engine)->total_edges(), nodes = (*engine)->total_nodes();
  // The exact step's count (edge sampling computes fewer messages than this).
  const double flops = cfg.gnn ? GnnFlops(cfg, edges, nodes, g.feat_size) : 0;
  const nino::NowcastTuning tuning = nino::TuningFromFlags(seed);
  const double rss = nino::bench::PeakRssGiB();  // before the GEMM probe's buffers
  const double gemm = absl::GetFlag(FLAGS_floor) ? GemmGflops(device) : 0;
  const double change = (pred - states[4]).abs().mean().item<double>();
  std::printf(
      "{\"model\":\"%s\",\"device\":\"%s\",\"threads\":%d,\"params\":%lld,\"nodes\":%lld,"
      "\"edges\":%lld,\"feat\":%lld,\"k\":%d,\"graph_build_s\":%.4f,\"lpe_s\":%.4f,"
      "\"step_s\":%.4f,\"step_first_s\":%.4f,\"step_cpu_s\":%.4f,\"peak_rss_gib\":%.3f,"
      "\"peak_gpu_gib\":%.3f,\"gflop\":%.2f,\"gflop_per_s\":%.2f,\"gemm_gflop_per_s\":%.2f,"
      "\"floor_s\":%.4f,\"mean_abs_change\":%.4g,\"repeat\":%d,\"graphs\":%d,"
      "\"edge_sample_ratio\":%g,\"bf16_edge_state\":%s,\"bf16_matmul\":%s,\"chunk_rows\":%lld}\n",
      bm->name.c_str(), dev.c_str(), threads, static_cast<long long>(nino::TotalParams(*table)),
      static_cast<long long>(nodes), static_cast<long long>(edges),
      static_cast<long long>(g.feat_size), k, build_s, (*engine)->lpe_seconds(), w[w.size() / 2],
      first, c[c.size() / 2], rss, peak_gpu, flops / 1e9, flops / 1e9 / w[w.size() / 2], gemm,
      gemm > 0 ? flops / 1e9 / gemm : 0.0, change, repeat, (*engine)->num_parts(),
      tuning.edge_sample_ratio, tuning.bf16_edge_state ? "true" : "false",
      tuning.bf16_matmul ? "true" : "false", static_cast<long long>(eo.forward.chunk_rows));
  return std::isfinite(change) ? 0 : 1;
}
