// bench_roundtrip: what does a NiNo step cost when it runs on the nowcaster service instead of
// in the trainer's process?
//
// For one model it times (a) the in-process NowcastEngine step and (b) the trainer's
// RemoteNowcaster against a NowcasterServer on loopback (in this process, same thread count):
// the 4 earlier snapshots of a NiNo period go up in the background (as in training, where 200
// steps separate them), then the timed call does what the NiNo step waits for: uploading the
// newest snapshot, Predict on the server, receiving and checking the prediction. The first round
// of each includes building the graph and its positional encoding; later rounds hit the caches.
//
//   bazel build //tools:bench_roundtrip
//   ./bazel-bin/tools/bench_roundtrip --model fm16 --threads 2 --repeat 5
//   ./bazel-bin/tools/bench_roundtrip --model gpt2-3-64 --threads 2 --repeat 3
//   ./bazel-bin/tools/bench_roundtrip --model fm16 --transports=plaintext,tls,mtls
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/remote_nowcaster.h"
#include "common/nino/nino_model.h"
#include "common/nino/nowcast_engine.h"
#include "common/runtime/allocator.h"
#include "nowcaster/nowcaster_server.h"
#include "tests/testing/test_certs.h"
#include "tools/bench_models.h"

ABSL_FLAG(std::string, model, "fm16",
          "fm16, fm32, mlp512, lm, gpt2-3-64, gpt2-4-128 or llama-tiny");
ABSL_FLAG(std::string, nino_ckpt, "../shared/reference/checkpoints/nino_no_posw.pt",
          "NiNo checkpoint (both paths load the same file)");
ABSL_FLAG(int, threads, 2, "LibTorch intra-op threads (process-wide: client and server)");
ABSL_FLAG(int, repeat, 5, "timed rounds after the first");
ABSL_FLAG(int, k, 40, "horizon");
ABSL_FLAG(std::string, transports, "plaintext",
          "comma-separated: plaintext, tls (server certificate), mtls (client certificate + "
          "bearer token); each runs the service rounds against a nowcaster of its own");
ABSL_FLAG(uint64_t, seed, 0, "seed of the model, the trajectory and the positional-encoding signs");

namespace {

// One --transports entry's NiNo steps through a nowcaster of its own.
struct ServiceRun {
  std::string transport;
  double first_s = 0;   // round 0: registration, graph and LPE on the server
  double median_s = 0;  // later rounds: upload of the newest snapshot + Predict + checks
  double upload_s = 0;  // median background upload, per snapshot
  double max_diff = 0;  // against the in-process prediction
};

// Secures `so` and `ro` for "tls" (server certificate) or "mtls" (client certificate and a
// bearer token), with certificates made by openssl in `dir`; "plaintext" leaves them.
absl::Status Secure(const std::string& transport, const std::string& dir,
                    nino::nowcaster::NowcasterOptions* so,
                    nino::client::RemoteNowcasterOptions* ro) {
  if (transport == "plaintext") return absl::OkStatus();
  if (transport != "tls" && transport != "mtls") {
    return absl::InvalidArgumentError(
        absl::StrCat("--transports: unknown '", transport, "' (plaintext, tls, mtls)"));
  }
  absl::StatusOr<nino::testing::TestCerts> certs = nino::testing::MakeTestCerts(dir);
  if (!certs.ok()) return certs.status();
  so->tls_cert_file = certs->server_cert;
  so->tls_key_file = certs->server_key;
  ro->credentials.tls_ca_file = certs->ca_cert;
  if (transport == "mtls") {
    const std::string token = "bench-token-0123456789abcdef";
    if (!nino::testing::WriteTestFile(dir + "/tokens", token + " bench\n") ||
        !nino::testing::WriteTestFile(dir + "/token", token + "\n")) {
      return absl::InternalError("cannot write the token files in " + dir);
    }
    so->tls_client_ca_file = certs->ca_cert;
    so->auth_tokens_file = dir + "/tokens";
    ro->credentials.tls_cert_file = certs->client_cert;
    ro->credentials.tls_key_file = certs->client_key;
    ro->credentials.auth_token_file = dir + "/token";
  }
  return absl::OkStatus();
}

absl::StatusOr<ServiceRun> RunService(const std::string& transport,
                                      nino::nowcaster::NowcasterOptions so,
                                      nino::client::RemoteNowcasterOptions ro,
                                      const torch::Tensor& states, const torch::Tensor& expected,
                                      int k, int repeat) {
  char dir_template[] = "/tmp/bench_roundtrip_tls_XXXXXX";
  const char* dir = mkdtemp(dir_template);
  if (dir == nullptr) return absl::InternalError("mkdtemp failed");
  if (absl::Status s = Secure(transport, dir, &so, &ro); !s.ok()) return s;
  auto server = nino::nowcaster::NowcasterServer::BuildAndStart(so);
  if (!server.ok()) return server.status();
  ro.address = absl::StrCat("127.0.0.1:", (*server)->port());
  ro.job_id = absl::StrCat(ro.job_id, "-", transport);
  ServiceRun out;
  out.transport = transport;
  std::vector<double> upload_s, remote_s;
  {
    nino::client::RemoteNowcaster client(ro);
    for (int r = 0; r <= repeat; ++r) {  // round 0: registration, graph and LPE on the server
      const int64_t step = 999 + 1000 * r;
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < 4; ++i) client.StateRecorded(step - (4 - i) * 200, states[i]);
      while (client.stats().uploads + client.stats().upload_failures < 5 * r + 4) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      if (client.stats().upload_failures > 0) {
        return absl::InternalError("a background upload failed");
      }
      upload_s.push_back(nino::bench::SecondsSince(t0) / 4);
      client.SetNinoStep(step);
      t0 = std::chrono::steady_clock::now();
      auto p = client.Nowcast(states, k);
      if (!p.ok()) return p.status();
      remote_s.push_back(nino::bench::SecondsSince(t0));
      out.max_diff = std::max(out.max_diff, (*p - expected).abs().max().item<double>());
    }
  }
  (*server)->Shutdown();
  std::filesystem::remove_all(dir);
  out.first_s = remote_s.front();
  out.median_s = nino::bench::Median(std::vector<double>(remote_s.begin() + 1, remote_s.end()));
  out.upload_s = nino::bench::Median(std::vector<double>(upload_s.begin() + 1, upload_s.end()));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  nino::runtime::TuneAllocatorForTensors();
  absl::SetProgramUsageMessage("NiNo step on the nowcaster service vs in process (seconds).");
  absl::ParseCommandLine(argc, argv);
  const int threads = std::max(1, absl::GetFlag(FLAGS_threads));
  at::set_num_threads(threads);
  const int repeat = std::max(1, absl::GetFlag(FLAGS_repeat));
  const int k = absl::GetFlag(FLAGS_k);
  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  const std::string ckpt = absl::GetFlag(FLAGS_nino_ckpt);

  auto bm = nino::bench::MakeBenchModel(absl::GetFlag(FLAGS_model), seed);
  if (!bm.ok()) return nino::bench::Fail("model", bm.status());
  auto table = nino::MakeParamTable(bm->shapes);
  if (!table.ok()) return nino::bench::Fail("parameter table", table.status());
  const torch::Tensor states = nino::bench::SmoothTrajectory(*table, bm->init, seed);
  auto loaded = nino::NiNoModel::Load(ckpt);
  if (!loaded.ok()) return nino::bench::Fail("NiNo checkpoint", loaded.status());
  auto model = std::make_shared<const nino::NiNoModel>(std::move(*loaded));

  // (a) In process.
  nino::NowcastEngineOptions eo;
  eo.lpe.sign_seed = seed;
  auto t0 = std::chrono::steady_clock::now();
  auto engine = nino::NowcastEngine::Create(model, *table, bm->graph, eo);
  if (!engine.ok()) return nino::bench::Fail("engine", engine.status());
  const double build_s = nino::bench::SecondsSince(t0);
  std::vector<double> local_s;
  torch::Tensor expected;
  for (int r = 0; r < repeat; ++r) {
    t0 = std::chrono::steady_clock::now();
    auto p = (*engine)->Nowcast(states, k);
    if (!p.ok()) return nino::bench::Fail("nowcast", p.status());
    local_s.push_back(nino::bench::SecondsSince(t0));
    expected = *p;
  }
  const int64_t P = (*engine)->graph().num_params, E = (*engine)->graph().num_edges();
  engine->reset();

  // (b) Through the service on loopback, once per --transports entry.
  nino::nowcaster::NowcasterOptions so;
  so.address = "127.0.0.1:0";
  so.metrics_port = 0;
  so.threads = threads;
  so.allow_download = false;
  so.models = {{"bench", ckpt}};
  so.memory_budget_bytes = std::max<int64_t>(so.memory_budget_bytes, 8 * 4 * P);
  nino::client::RemoteNowcasterOptions ro;
  ro.job_id = nino::client::MakeJobId(bm->name, seed);
  ro.params = bm->shapes;
  ro.graph = bm->graph;
  ro.nino_model = "bench";
  ro.lpe_seed = seed;
  ro.nowcast_timeout = absl::Seconds(600);
  ro.rpc_timeout = absl::Seconds(120);
  ro.quiet = true;
  std::vector<std::string> transports =
      absl::StrSplit(absl::GetFlag(FLAGS_transports), ',', absl::SkipWhitespace());
  std::vector<ServiceRun> runs;
  for (const std::string& transport : transports) {
    absl::StatusOr<ServiceRun> run = RunService(transport, so, ro, states, expected, k, repeat);
    if (!run.ok()) return nino::bench::Fail(transport, run.status());
    runs.push_back(*run);
  }
  const double local_first = local_s.front();
  std::vector<double> local_rest(local_s.begin() + (repeat > 1 ? 1 : 0), local_s.end());
  const double lm = nino::bench::Median(local_rest);
  std::printf("%s: %lld parameters (%.1f MB per snapshot), %lld edges, %d threads, k=%d\n",
              bm->name.c_str(), static_cast<long long>(P), 4.0 * P / 1e6, static_cast<long long>(E),
              threads, k);
  std::printf("in process : graph+LPE %.3f s, first step %.3f s, median step %.4f s\n", build_s,
              local_first, lm);
  double max_diff = 0;
  for (const ServiceRun& r : runs) {
    const double rm = r.median_s;
    max_diff = std::max(max_diff, r.max_diff);
    std::printf(
        "service %-10s: first NiNo step %.3f s (registration, graph+LPE on the server), median "
        "%.4f s; background upload %.4f s per snapshot\n",
        r.transport.c_str(), r.first_s, rm, r.upload_s);
    std::printf(
        "overhead %-9s: %.4f s per NiNo step (%.2fx the in-process step); max |diff| %.2g\n",
        r.transport.c_str(), rm - lm, lm > 0 ? rm / lm : 0.0, r.max_diff);
    std::printf(
        "{\"model\":\"%s\",\"transport\":\"%s\",\"params\":%lld,\"edges\":%lld,\"threads\":%d,"
        "\"k\":%d,\"inproc_build_s\":%.4f,\"inproc_first_s\":%.4f,\"inproc_step_s\":%.5f,"
        "\"remote_first_s\":%.4f,\"remote_step_s\":%.5f,\"overhead_s\":%.5f,"
        "\"upload_s_per_snapshot\":%.5f,\"max_abs_diff\":%.3g,\"repeat\":%d}\n",
        bm->name.c_str(), r.transport.c_str(), static_cast<long long>(P), static_cast<long long>(E),
        threads, k, build_s, local_first, lm, r.first_s, rm, rm - lm, r.upload_s, r.max_diff,
        repeat);
  }
  return max_diff < 1e-4 ? 0 : 3;
}
