// nino_step_demo [--nino_model default|NAME|PATH] [--threads N] [--k K] [--seed S]
//
// Builds the FM-16 network (3 conv layers + linear, FashionMNIST), makes 5 parameter states
// (a short synthetic trajectory from its initialisation), applies one NiNo step and prints the
// graph size, k and the time taken. The NiNo model is found the way every binary finds it
// (common/nino/model_catalog.h): the built-in default, an official name or a file.
#include <sys/resource.h>
#include <time.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/nino/model_catalog.h"
#include "common/nino/nowcast_engine.h"
#include "common/runtime/allocator.h"
#include "common/runtime/threads.h"

ABSL_FLAG(std::string, nino_model, "default",
          "NiNo model: default (built in), nino_no_posw, nino_mlp, nino_mlp_h32 or a file");
ABSL_FLAG(int, threads, 0, "intra-op threads (0 = all cores)");
ABSL_FLAG(int, k, 40, "horizon in units of 200 steps, 1..40");
ABSL_FLAG(int, seed, 0, "seed of the network and the trajectory");
ABSL_FLAG(int, repeat, 1, "run the nowcast this many times (timings: first and median)");
ABSL_FLAG(bool, allow_download, true, "download the official checkpoint if not cached");

namespace {

// The official FM-16 Net: Conv(1,16,3,s2,p0)-ReLU-Conv(16,32,3,same)-ReLU-Conv(32,32,3,same)-
// ReLU-GAP-Flatten-Linear(32,10); parameters named fc.0, fc.2, fc.4, fc.8 as in the official code.
struct Fm16Impl : torch::nn::Module {
  Fm16Impl() {
    fc = register_module(
        "fc",
        torch::nn::Sequential(
            torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 16, 3).stride(2)), torch::nn::ReLU(),
            torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 32, 3).padding(1)), torch::nn::ReLU(),
            torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 32, 3).padding(1)), torch::nn::ReLU(),
            torch::nn::AdaptiveAvgPool2d(1), torch::nn::Flatten(), torch::nn::Linear(32, 10)));
  }
  torch::nn::Sequential fc{nullptr};
};
TORCH_MODULE(Fm16);

}  // namespace

int main(int argc, char** argv) {
  nino::runtime::TuneAllocatorForTensors();
  absl::SetProgramUsageMessage("One NiNo step on the FM-16 network.");
  absl::ParseCommandLine(argc, argv);
  const int threads = nino::runtime::ThreadsOrAllCores(absl::GetFlag(FLAGS_threads));
  at::set_num_threads(threads);
  const int k = absl::GetFlag(FLAGS_k);
  if (k < 1 || k > 40) {
    std::fprintf(stderr, "error: --k must be in 1..40, got %d\n", k);
    return 2;
  }

  auto located =
      nino::ResolveModel(absl::GetFlag(FLAGS_nino_model), absl::GetFlag(FLAGS_allow_download));
  if (!located.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(located.status().message()).c_str());
    return 1;
  }
  std::printf("NiNo model: %s (%s%s%s)\n", located->name.c_str(), located->source.c_str(),
              located->path.empty() ? "" : " ", located->path.c_str());
  auto model = nino::LoadModel(*located);
  if (!model.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(model.status().message()).c_str());
    return 1;
  }

  torch::manual_seed(absl::GetFlag(FLAGS_seed));
  Fm16 net;
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  std::vector<torch::Tensor> params;
  for (const auto& p : net->named_parameters()) {
    shapes.push_back({p.key(), p.value().sizes().vec()});
    params.push_back(p.value());
  }
  auto table = nino::MakeParamTable(shapes);
  if (!table.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(table.status().message()).c_str());
    return 1;
  }
  // 5 states: theta_s = theta_{s-1} + sigma_t (0.05 D + 0.02 E_s), as in the golden recipe.
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> flat;
  for (auto& p : params) flat.push_back(p.detach().reshape({-1}));
  torch::Tensor theta = torch::cat(flat);
  torch::Tensor sigma = torch::empty_like(theta);
  for (const auto& t : *table) {
    double s = t.numel > 1 ? theta.narrow(0, t.offset, t.numel).std().item<double>() : 0.0;
    sigma.narrow(0, t.offset, t.numel).fill_(std::max(s, 1e-2));
  }
  torch::Tensor drift = torch::randn_like(theta);
  std::vector<torch::Tensor> states{theta};
  for (int s = 1; s < 5; ++s)
    states.push_back(states.back() + sigma * (0.05 * drift + 0.02 * torch::randn_like(theta)));
  torch::Tensor stacked = torch::stack(states);

  auto t0 = std::chrono::steady_clock::now();
  auto engine = nino::NowcastEngine::Create(
      std::make_shared<const nino::NiNoModel>(std::move(*model)), *table, nino::GraphSpec{});
  if (!engine.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(engine.status().message()).c_str());
    return 1;
  }
  auto t1 = std::chrono::steady_clock::now();
  absl::StatusOr<torch::Tensor> pred;
  std::vector<double> times, cpu_times;
  auto cpu_now = [] {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
  };
  for (int i = 0; i < std::max(1, absl::GetFlag(FLAGS_repeat)); ++i) {
    auto ts = std::chrono::steady_clock::now();
    const double c0 = cpu_now();
    pred = (*engine)->Nowcast(stacked, k);
    cpu_times.push_back(cpu_now() - c0);
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count());
    if (!pred.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(pred.status().message()).c_str());
      return 1;
    }
  }
  const double first_s = times.front();
  std::sort(times.begin(), times.end());
  const double median_s = times[times.size() / 2];
  std::sort(cpu_times.begin(), cpu_times.end());
  const double median_cpu_s = cpu_times[cpu_times.size() / 2];
  const auto& g = (*engine)->graph();
  const double build_s = std::chrono::duration<double>(t1 - t0).count();
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  std::printf("FM-16: %lld parameters, graph %lld nodes, %lld edges, %lld feature slots\n",
              static_cast<long long>(g.num_params), static_cast<long long>(g.num_nodes),
              static_cast<long long>(g.num_edges()), static_cast<long long>(g.feat_size));
  std::printf(
      "NiNo step: k=%d, graph+LPE %.3f s, nowcast first %.3f s, median %.3f s wall / %.3f s "
      "CPU of %zu, threads %d, peak RSS %.2f GiB\n",
      k, build_s, first_s, median_s, median_cpu_s, times.size(), threads, ru.ru_maxrss / 1048576.0);
  std::printf("parameter change |pred - current|: mean %.4g, max %.4g\n",
              (*pred - states.back()).abs().mean().item<double>(),
              (*pred - states.back()).abs().max().item<double>());
  return 0;
}
