// A user's own LibTorch training script with NiNo steps from a nino_nowcaster: a residual MLP
// (not one of nino_train's tasks) on FashionMNIST, with its own model, data loop, optimizer and,
// when started torchrun-style with WORLD_SIZE > 1, its own c10d Gloo process group. NiNo is the
// few lines marked "NiNo" below.
//
//   nino_nowcaster --address=127.0.0.1:50051 --nino_model=nino_no_posw=PATH &
//   residual_mlp --nowcaster=127.0.0.1:50051 --steps=3000
//   # two workers:
//   export WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29600
//   for r in 0 1; do RANK=$r residual_mlp --nowcaster=127.0.0.1:50051 & done; wait
//
// Prints a progress line per --log_every steps and, at the end, one JSON line with the test
// accuracy, the NiNo counters and the SHA-256 of the final parameters (equal on every rank).
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "client/nino_client.h"
#include "common/io/checkpoint_locator.h"
#include "trainer/data/fashion_mnist.h"

ABSL_FLAG(std::string, nowcaster, "", "host:port of a nino_nowcaster (empty: plain Adam)");
ABSL_FLAG(std::string, nino_model, "", "the NiNo model the nowcaster runs (empty: its default)");
ABSL_FLAG(int64_t, steps, 3000, "training steps");
ABSL_FLAG(int64_t, period, 1000, "steps between NiNo steps");
ABSL_FLAG(int64_t, batch, 128, "global batch size");
ABSL_FLAG(double, lr, 1e-3, "Adam learning rate");
ABSL_FLAG(uint64_t, seed, 1, "weights and batch order");
ABSL_FLAG(int64_t, train_limit, -1, "use the first N training images (-1: all)");
ABSL_FLAG(int64_t, log_every, 500, "progress line every N steps");
ABSL_FLAG(int, threads, 1, "LibTorch threads");
ABSL_FLAG(std::string, data_dir, "", "FashionMNIST folder (default: the Debian package's)");

namespace {

// The user's model: 784 -> 128, two residual blocks x + fc2(relu(fc1(x))), 128 -> 10.
struct BlockImpl : torch::nn::Module {
  BlockImpl()
      : fc1(register_module("fc1", torch::nn::Linear(128, 128))),
        fc2(register_module("fc2", torch::nn::Linear(128, 128))) {}
  torch::Tensor forward(const torch::Tensor& x) { return x + fc2(torch::relu(fc1(x))); }
  torch::nn::Linear fc1, fc2;
};
TORCH_MODULE(Block);

struct ResidualMlpImpl : torch::nn::Module {
  ResidualMlpImpl()
      : inp(register_module("inp", torch::nn::Linear(784, 128))),
        blocks(register_module("blocks", torch::nn::ModuleList(Block(), Block()))),
        head(register_module("head", torch::nn::Linear(128, 10))) {}
  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(inp(x.view({x.size(0), -1})));
    for (const auto& b : *blocks) x = b->as<Block>()->forward(x);
    return head(x);
  }
  torch::nn::Linear inp;
  torch::nn::ModuleList blocks;
  torch::nn::Linear head;
};
TORCH_MODULE(ResidualMlp);

int Fail(const std::string& what) {
  std::fprintf(stderr, "error: %s\n", what.c_str());
  return 1;
}

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

// torchrun-style environment -> a Gloo process group (null for one process).
c10::intrusive_ptr<c10d::ProcessGroupGloo> MakeProcessGroup(int rank, int world) {
  if (world <= 1) return {};
  const char* addr = std::getenv("MASTER_ADDR");
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(EnvInt("MASTER_PORT", 29500));
  so.isServer = rank == 0;
  so.numWorkers = world;
  auto store = c10::make_intrusive<c10d::TCPStore>(addr ? addr : "127.0.0.1", so);
  auto opts = c10d::ProcessGroupGloo::Options::create();
  opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
}

void AllreduceGradients(c10d::ProcessGroupGloo* pg, ResidualMlp& model, int world) {
  if (pg == nullptr) return;
  for (auto& p : model->parameters()) {
    std::vector<at::Tensor> g{p.grad()};
    pg->allreduce(g)->wait();
    p.grad().div_(world);
  }
}

double Accuracy(ResidualMlp& model, const nino::trainer::ImageDataset& test) {
  torch::NoGradGuard no_grad;
  const auto pred = model->forward(test.images).argmax(1);
  return 100.0 * pred.eq(test.labels).sum().item<double>() / test.size();
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "A user's residual MLP on FashionMNIST trained with NiNo steps from a nowcaster.");
  absl::ParseCommandLine(argc, argv);
  at::set_num_threads(absl::GetFlag(FLAGS_threads));
  const int rank = EnvInt("RANK", 0), world = EnvInt("WORLD_SIZE", 1);
  const std::string dir = absl::GetFlag(FLAGS_data_dir).empty()
                              ? nino::trainer::DefaultFashionMnistDir()
                              : absl::GetFlag(FLAGS_data_dir);
  auto train = nino::trainer::LoadFashionMnist(dir, true, absl::GetFlag(FLAGS_train_limit));
  auto test = nino::trainer::LoadFashionMnist(dir, false, 2000);
  if (!train.ok() || !test.ok())
    return Fail((train.ok() ? test.status() : train.status()).ToString());

  torch::manual_seed(absl::GetFlag(FLAGS_seed));
  ResidualMlp model;
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(absl::GetFlag(FLAGS_lr)));
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg = MakeProcessGroup(rank, world);
  const int64_t steps = absl::GetFlag(FLAGS_steps);

  // NiNo: wrap the optimizer. Rank 0 streams snapshots to the nowcaster; predictions reach every
  // rank through the process group.
  std::unique_ptr<nino::client::NowcastOptimizer> nino;
  if (!absl::GetFlag(FLAGS_nowcaster).empty()) {
    nino::client::NowcastOptimizerOptions o;
    o.nowcaster = absl::GetFlag(FLAGS_nowcaster);
    o.nino_model = absl::GetFlag(FLAGS_nino_model);
    o.job_name = "residual-mlp";
    o.period = absl::GetFlag(FLAGS_period);
    o.max_train_steps = steps;
    o.lpe_seed = absl::GetFlag(FLAGS_seed);
    auto created = nino::client::NowcastOptimizer::Create(
        &adam, nino::client::NamedParameters(*model), o, nino::client::WrapProcessGroup(pg));
    if (!created.ok()) return Fail(created.status().ToString());
    nino = std::move(*created);
  }

  const int64_t local_batch = absl::GetFlag(FLAGS_batch) / world;
  const int64_t n = train->size();
  torch::Generator gen = at::detail::createCPUGenerator(absl::GetFlag(FLAGS_seed));
  torch::Tensor order = torch::randperm(n, gen);
  int64_t cursor = 0;
  for (int64_t step = 0; step < steps; ++step) {
    // The user's data loop: the same global batch on every rank, this rank's slice of it.
    if (cursor + absl::GetFlag(FLAGS_batch) > n) {
      order = torch::randperm(n, gen);
      cursor = 0;
    }
    const torch::Tensor idx = order.narrow(0, cursor + rank * local_batch, local_batch);
    cursor += absl::GetFlag(FLAGS_batch);
    adam.zero_grad();
    if (!nino || nino->need_grads()) {  // NiNo: a NiNo step needs no gradients
      torch::Tensor loss = torch::nn::functional::cross_entropy(
          model->forward(train->images.index_select(0, idx)), train->labels.index_select(0, idx));
      loss.backward();
      AllreduceGradients(pg.get(), model, world);
    }
    if (nino) {
      nino->step();  // NiNo: instead of adam.step()
    } else {
      adam.step();
    }
    if (rank == 0 && absl::GetFlag(FLAGS_log_every) > 0 &&
        (step + 1) % absl::GetFlag(FLAGS_log_every) == 0) {
      std::printf("step %lld: test accuracy %.2f%%\n", static_cast<long long>(step + 1),
                  Accuracy(model, *test));
      std::fflush(stdout);
    }
  }
  std::vector<torch::Tensor> flat;
  for (const auto& p : model->parameters()) flat.push_back(p.detach().reshape({-1}));
  const torch::Tensor all = torch::cat(flat).contiguous();
  const nino::client::NowcastOptimizer::Stats st =
      nino ? nino->stats() : nino::client::NowcastOptimizer::Stats{};
  const nlohmann::json summary = {
      {"rank", rank},
      {"steps", steps},
      {"test_accuracy", Accuracy(model, *test)},
      {"nino_steps", st.nino_steps},
      {"nino_applied", st.applied},
      {"nino_fallbacks", st.fallbacks},
      {"snapshot_uploads", st.remote.uploads},
      {"params_sha256", nino::io::Sha256Hex(std::string(static_cast<const char*>(all.data_ptr()),
                                                        all.numel() * 4))}};
  std::printf("%s\n", summary.dump().c_str());
  return 0;
}
