#include "tools/bench_models.h"

#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "trainer/models.h"

namespace nino::bench {
namespace {

BenchModel FromModule(const std::string& name, torch::nn::Module& m, GraphSpec graph) {
  BenchModel b;
  b.name = name;
  b.graph = graph;
  std::vector<torch::Tensor> flat;
  for (const auto& p : m.named_parameters()) {
    b.shapes.push_back({p.key(), p.value().sizes().vec()});
    flat.push_back(p.value().detach().reshape({-1}).to(torch::kFloat32));
  }
  b.init = torch::cat(flat);
  return b;
}

BenchModel Vision(const std::string& name, std::vector<int64_t> hid, bool conv) {
  trainer::VisionNetOptions o;
  o.hid = std::move(hid);
  o.conv = conv;
  trainer::VisionNet net(o);
  return FromModule(name, *net, GraphSpec{});
}

BenchModel Gpt2(const std::string& name, int64_t vocab, int64_t ctx, int64_t d, int64_t layers,
                int64_t heads) {
  trainer::Gpt2Options o;
  o.vocab_size = vocab;
  o.n_positions = ctx;
  o.n_embd = d;
  o.n_layer = layers;
  o.n_head = heads;
  trainer::Gpt2LM net(o);
  GraphSpec g;
  g.kind = GraphSpec::Kind::kGpt2;
  g.num_heads = heads;
  return FromModule(name, *net, g);
}

// Llama-style model (HF names): weights ~ N(0, 0.02), RMSNorm gains 1.
BenchModel Llama(const std::string& name, const LlamaShape& shape) {
  BenchModel b;
  b.name = name;
  b.shapes = LlamaNamedShapes(shape);
  b.graph.kind = GraphSpec::Kind::kLlama;
  b.graph.num_heads = shape.heads;
  b.graph.num_kv_heads = shape.kv_heads;
  std::vector<torch::Tensor> flat;
  for (const auto& [n, s] : b.shapes) {
    flat.push_back(s.size() == 1 ? torch::ones({s[0]}) : torch::randn(s).reshape({-1}) * 0.02);
  }
  b.init = torch::cat(flat);
  return b;
}

}  // namespace

std::vector<std::string> BenchModelNames() {
  return {"fm16", "fm32", "mlp512", "lm", "gpt2-3-64", "gpt2-4-128", "llama-tiny"};
}

absl::StatusOr<BenchModel> MakeBenchModel(const std::string& name, uint64_t seed) {
  torch::manual_seed(seed);
  torch::NoGradGuard no_grad;
  if (name == "fm16") return Vision(name, {16, 32, 32}, true);
  if (name == "fm32") return Vision(name, {32, 64, 64}, true);
  if (name == "mlp512") return Vision(name, {512, 512, 512}, false);
  if (name == "lm") return Gpt2(name, 256, 128, 64, 3, 4);
  if (name == "gpt2-3-64") return Gpt2(name, 50257, 1024, 64, 3, 4);
  if (name == "gpt2-4-128") return Gpt2(name, 50257, 1024, 128, 4, 4);
  if (name == "llama-tiny") {
    LlamaShape s;
    s.vocab = 8192;
    s.dim = 128;
    s.layers = 4;
    s.heads = 4;
    s.kv_heads = 2;
    s.ffn = 344;
    return Llama(name, s);
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown model '", name, "' (known: ",
                                                 absl::StrJoin(BenchModelNames(), ", "), ")"));
}

torch::Tensor SmoothTrajectory(const std::vector<ParamSpec>& table, const torch::Tensor& init,
                               uint64_t seed) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed + 1);
  torch::Tensor sigma = torch::empty_like(init);
  for (const auto& t : table) {
    const double s = t.numel > 1 ? init.narrow(0, t.offset, t.numel).std().item<double>() : 0.0;
    sigma.narrow(0, t.offset, t.numel).fill_(std::max(s, 1e-2));
  }
  torch::Tensor drift = torch::randn_like(init);
  std::vector<torch::Tensor> states{init};
  for (int s = 1; s < 5; ++s) {
    states.push_back(states.back() + sigma * (0.05 * drift + 0.02 * torch::randn_like(init)));
  }
  return torch::stack(states);
}

double PeakRssGiB() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1048576.0;
}

double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

int Fail(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "error: %s: %s\n", what.c_str(), status.ToString().c_str());
  return 1;
}

}  // namespace nino::bench
