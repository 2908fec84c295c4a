// Overhead of the C++ client library (client::NowcastOptimizer) against a running nino_nowcaster:
// the C++ counterpart of python/bench/bench_client.py, same cases and fields, one JSON line per
// case:
//   record_ms          what a recording step() costs the training thread beyond a plain step
//                      (flat float32 copy of the parameters, enqueue)
//   upload_ms          one background PutState of a snapshot (CRC-32C, chunks, the RPC), from
//                      the end of the recording step() until the upload thread is idle
//   nino_step_ms       a whole NiNo step() as the loop sees it (pending uploads, the newest
//                      snapshot's upload, Predict, checks, writing the parameters)
//   server_nowcast_ms  the server's own NiNo computation (PredictionChunk.nowcast_seconds)
//   client_overhead_ms nino_step_ms - server_nowcast_ms
// Medians over --repeat NiNo periods; the first period (registration, graph build) is not counted.
//
//   bench_client --address=127.0.0.1:50051 --cases=fm16,mlp10m
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/nino_client.h"
#include "common/runtime/allocator.h"
#include "tools/bench_models.h"

ABSL_FLAG(std::string, address, "", "a running nino_nowcaster (host:port)");
ABSL_FLAG(std::string, cases, "fm16,mlp10m",
          "fm16 (GNN, nino_no_posw), mlp10m (WNN+, nino_mlp), mlp10m-gnn");
ABSL_FLAG(int, repeat, 10, "timed NiNo periods for fm16");
ABSL_FLAG(int, repeat_large, 2, "timed NiNo periods for the larger cases");
ABSL_FLAG(int64_t, period, 20, "steps between NiNo steps");

namespace {
using nino::bench::Median;
using Clock = std::chrono::steady_clock;

struct Case {
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  std::string nino_model;
};

absl::StatusOr<Case> MakeCase(const std::string& name) {
  if (name == "fm16") {
    auto m = nino::bench::MakeBenchModel("fm16", 0);
    if (!m.ok()) return m.status();
    return Case{m->shapes, "nino_no_posw"};
  }
  if (name == "mlp10m" || name == "mlp10m-gnn") {  // 784-2560-2560-1024-10: 11,198,474 params
    std::vector<std::pair<std::string, std::vector<int64_t>>> s;
    const int64_t dims[] = {784, 2560, 2560, 1024, 10};
    for (int i = 0; i < 4; ++i) {
      s.push_back({"fc." + std::to_string(2 * i) + ".weight", {dims[i + 1], dims[i]}});
      s.push_back({"fc." + std::to_string(2 * i) + ".bias", {dims[i + 1]}});
    }
    return Case{s, name == "mlp10m" ? "nino_mlp" : "nino_no_posw"};
  }
  return absl::InvalidArgumentError("unknown case " + name);
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "?";
}

double Ms(Clock::time_point t0) { return nino::bench::SecondsSince(t0) * 1000; }

absl::StatusOr<nlohmann::json> RunCase(const std::string& name, int repeat, int64_t period) {
  auto c = MakeCase(name);
  if (!c.ok()) return c.status();
  torch::manual_seed(0);
  nino::client::NamedParams params;
  int64_t n = 0;
  for (const auto& [pname, shape] : c->shapes) {
    params.push_back({pname, (torch::randn(shape) * 0.05).requires_grad_(true)});
    n += params.back().second.numel();
  }
  std::vector<torch::Tensor> tensors;
  for (const auto& [pname, p] : params) tensors.push_back(p);
  torch::optim::SGD sgd(tensors, torch::optim::SGDOptions(1.0));
  nino::client::NowcastOptimizerOptions o;
  o.nowcaster = absl::GetFlag(FLAGS_address);
  o.job_id = "bench-cc-" + name + "-" + std::to_string(getpid());
  o.nino_model = c->nino_model;
  o.period = period;
  o.max_train_steps = 100 * period;
  o.nowcast_timeout = absl::Seconds(600);
  o.quiet = true;
  auto opt = nino::client::NowcastOptimizer::Create(&sgd, params, o);
  if (!opt.ok()) return opt.status();
  for (auto& p : tensors) p.mutable_grad() = torch::randn_like(p) * 1e-3;  // a fixed small step
  std::vector<double> plain, record, upload, nino_steps, server;
  for (int period_i = 0; period_i <= repeat; ++period_i) {
    for (int64_t i = 0; i < period; ++i) {
      const bool nino = !(*opt)->need_grads();
      const bool records = ((*opt)->step_idx() + 1) % (period / 5) == 0;
      const auto t0 = Clock::now();
      const nino::NinoStepOutcome out = (*opt)->step();
      const double dt = Ms(t0);
      if (nino) {
        if (!out.applied) return absl::InternalError("NiNo step failed: " + out.status.ToString());
        if (period_i > 0) {
          nino_steps.push_back(dt);
          server.push_back((*opt)->stats().remote.last_server_nowcast_seconds * 1000);
        }
      } else if (records) {
        record.push_back(dt);
        const auto t1 = Clock::now();
        if (!(*opt)->WaitForUploads(absl::Seconds(600)))
          return absl::DeadlineExceededError("upload");
        upload.push_back(Ms(t1));
      } else {
        plain.push_back(dt);
      }
    }
  }
  auto r3 = [](double v) { return std::round(v * 1000) / 1000; };
  return nlohmann::json{
      {"case", name},
      {"client", "c++"},
      {"params", n},
      {"snapshot_mb", r3(4.0 * n / 1e6)},
      {"nino_model", c->nino_model},
      {"repeat", repeat},
      {"record_ms", r3(Median(record) - Median(plain))},
      {"upload_ms", r3(Median(upload))},
      {"upload_mb_per_s", std::round(4.0 * n / 1e6 / (Median(upload) / 1000) * 10) / 10},
      {"nino_step_ms", r3(Median(nino_steps))},
      {"server_nowcast_ms", r3(Median(server))},
      {"client_overhead_ms", r3(Median(nino_steps) - Median(server))}};
}

}  // namespace

int main(int argc, char** argv) {
  nino::runtime::TuneAllocatorForTensors();
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  at::set_num_threads(1);
  if (absl::GetFlag(FLAGS_address).empty())
    return nino::bench::Fail("flags", absl::InvalidArgumentError("--address is required"));
  std::vector<std::string> argv_s(argv, argv + argc);
  for (const std::string& name :
       std::vector<std::string>(absl::StrSplit(absl::GetFlag(FLAGS_cases), ','))) {
    const int repeat =
        name == "fm16" ? absl::GetFlag(FLAGS_repeat) : absl::GetFlag(FLAGS_repeat_large);
    auto row = RunCase(name, repeat, absl::GetFlag(FLAGS_period));
    if (!row.ok()) return nino::bench::Fail(name, row.status());
    (*row)["machine"] = {{"nproc", std::thread::hardware_concurrency()}, {"cpu", CpuModel()}};
    (*row)["command"] = absl::StrJoin(argv_s, " ");
    (*row)["server"] = absl::GetFlag(FLAGS_address);
    std::printf("%s\n", row->dump().c_str());
    std::fflush(stdout);
  }
  return 0;
}
