// nino_nowcaster: the NiNo nowcasting daemon (nino.v1.Nowcaster over gRPC).
//
//   nino_nowcaster [--address=0.0.0.0:50051] [--metrics_port=9090] [--device=cpu]
//                  [--nino_model=default,nino_no_posw,mine=/path/mine.pt]
//                  [--memory_budget_bytes=N] [--queue_length=N] [--workers=N] [--threads=N]
//                  [--tls_cert=PEM --tls_key=PEM [--tls_client_ca=PEM]] [--auth_tokens_file=F]
//                  [--metrics_token_file=F] [--allow_insecure] ...
//
// A non-loopback --address needs TLS and --auth_tokens_file, or --allow_insecure.
//
// SIGTERM / SIGINT: health NOT_SERVING, lame duck, drain in-flight calls, exit 0.
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "common/runtime/allocator.h"
#include "common/runtime/list_flags.h"
#include "common/runtime/threads.h"
#include "nowcaster/log.h"
#include "nowcaster/nowcaster_server.h"
#include "nowcaster/options.h"

namespace {
const nino::nowcaster::NowcasterOptions kDefaults;
}  // namespace

ABSL_FLAG(std::string, address, kDefaults.address, "gRPC listening address host:port");
ABSL_FLAG(int, metrics_port, kDefaults.metrics_port,
          "Prometheus /metrics port (0 = off, -1 = any free port)");
ABSL_FLAG(std::string, metrics_host, kDefaults.metrics_host,
          "host /metrics binds to (e.g. an internal interface, apart from --address)");
ABSL_FLAG(std::string, metrics_token_file, "",
          "file whose first line is a bearer token /metrics requires (401 without it); "
          "empty = /metrics is open");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain: serve gRPC over TLS (with --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle: clients must present a certificate it verifies (mutual TLS)");
ABSL_FLAG(std::string, auth_tokens_file, "",
          "bearer tokens, one '<token> <principal> [admin]' per line ('#' comments); empty = "
          "no authentication");
ABSL_FLAG(bool, allow_insecure, false,
          "start on a non-loopback --address without TLS or without --auth_tokens_file (logs a "
          "warning; e.g. when a service mesh provides mutual TLS)");
ABSL_FLAG(std::string, device, kDefaults.device, "cpu, cuda or cuda:N (CUDA builds only)");
ABSL_FLAG(std::vector<std::string>, nino_model, {},
          "models served, name=model[,name=model...] or bare models; a model is 'default' (the "
          "project's own, built in), an official name (nino_no_posw, nino_mlp, nino_mlp_h32: "
          "cache, a download, ../shared) or a file (served under its stem); the first one is "
          "the default for jobs; repeatable (the lists add up); none given: the built-in model "
          "alone");
ABSL_FLAG(bool, allow_download, kDefaults.allow_download,
          "download an official checkpoint named in --nino_model if it is not cached");
ABSL_FLAG(int64_t, memory_budget_bytes, kDefaults.memory_budget_bytes,
          "memory of all jobs; a job reserves its snapshots ((ctx + 1) * 4 * num_params "
          "bytes), NiNo graph and working memory, estimated at RegisterJob");
ABSL_FLAG(int, queue_length, kDefaults.queue_length,
          "Predict requests that may wait for a worker; more get RESOURCE_EXHAUSTED");
ABSL_FLAG(int, workers, kDefaults.workers, "threads running nowcasts");
ABSL_FLAG(int64_t, register_wait_ms, kDefaults.register_wait_ms,
          "RegisterJob waits this long for the job's graph build (it goes on in the background)");
ABSL_FLAG(int, max_pending_builds, kDefaults.max_pending_builds,
          "registered jobs whose graphs may wait for the builder");
ABSL_FLAG(int, threads, kDefaults.threads, "LibTorch intra-op threads (0 = all cores)");
ABSL_FLAG(int64_t, max_message_bytes, kDefaults.max_message_bytes,
          "largest gRPC message received or sent");
ABSL_FLAG(int64_t, max_chunk_bytes, kDefaults.max_chunk_bytes,
          "largest chunk payload accepted or sent");
ABSL_FLAG(int, max_rpc_threads, kDefaults.max_rpc_threads,
          "most gRPC threads serving calls (0 = gRPC default)");
ABSL_FLAG(int64_t, lame_duck_ms, kDefaults.lame_duck_ms,
          "on SIGTERM: serve this long with health NOT_SERVING before draining");
ABSL_FLAG(int64_t, shutdown_deadline_ms, kDefaults.shutdown_deadline_ms,
          "on SIGTERM: time in-flight calls get to finish before they are cancelled");
ABSL_FLAG(int64_t, testonly_nowcast_delay_ms, 0,
          "TEST ONLY: every nowcast waits this long on its worker first (a slow nowcaster, for the "
          "failure tests of tests/nowcaster_faults_test.cc); 0 = off");

int main(int argc, char** argv) {
  nino::runtime::TuneAllocatorForTensors();
  absl::SetProgramUsageMessage("The NiNo nowcasting daemon (gRPC nino.v1.Nowcaster).");
  absl::ParseCommandLine(argc, argv);
  if (absl::Status s = nino::runtime::AccumulateListFlags(argc, argv, {"nino_model"}); !s.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  using nino::nowcaster::LogError;
  using nino::nowcaster::LogInfo;

  nino::nowcaster::NowcasterOptions options;
  options.address = absl::GetFlag(FLAGS_address);
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  options.metrics_host = absl::GetFlag(FLAGS_metrics_host);
  options.metrics_token_file = absl::GetFlag(FLAGS_metrics_token_file);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  options.auth_tokens_file = absl::GetFlag(FLAGS_auth_tokens_file);
  options.allow_insecure = absl::GetFlag(FLAGS_allow_insecure);
  options.device = absl::GetFlag(FLAGS_device);
  auto models = nino::nowcaster::ParseModelSpecs(absl::GetFlag(FLAGS_nino_model));
  if (!models.ok()) {
    LogError(models.status().ToString());
    return 2;
  }
  options.models = std::move(*models);
  options.allow_download = absl::GetFlag(FLAGS_allow_download);
  options.memory_budget_bytes = absl::GetFlag(FLAGS_memory_budget_bytes);
  options.queue_length = absl::GetFlag(FLAGS_queue_length);
  options.workers = absl::GetFlag(FLAGS_workers);
  options.register_wait_ms = absl::GetFlag(FLAGS_register_wait_ms);
  options.max_pending_builds = absl::GetFlag(FLAGS_max_pending_builds);
  options.threads = absl::GetFlag(FLAGS_threads);
  if (options.threads == 0) options.threads = nino::runtime::ThreadsOrAllCores(0);
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.max_chunk_bytes = absl::GetFlag(FLAGS_max_chunk_bytes);
  options.max_rpc_threads = absl::GetFlag(FLAGS_max_rpc_threads);
  options.lame_duck_ms = absl::GetFlag(FLAGS_lame_duck_ms);
  options.shutdown_deadline_ms = absl::GetFlag(FLAGS_shutdown_deadline_ms);
  if (const int64_t delay_ms = absl::GetFlag(FLAGS_testonly_nowcast_delay_ms); delay_ms > 0) {
    LogInfo(absl::StrCat("TEST ONLY: every nowcast waits ", delay_ms, " ms first"));
    options.before_nowcast_for_testing = [delay_ms] {
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    };
  }

  // Block SIGTERM/SIGINT in every thread (gRPC's and LibTorch's inherit this mask); one thread
  // takes them with sigwait and runs the ordinary, non-signal-safe shutdown.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto server = nino::nowcaster::NowcasterServer::BuildAndStart(std::move(options));
  if (!server.ok()) {
    LogError(absl::StrCat("cannot start: ", server.status().ToString()));
    return server.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  nino::nowcaster::NowcasterServer* s = server->get();
  std::thread signal_thread([s, stop_signals] {
    int signal = 0;
    sigwait(&stop_signals, &signal);
    LogInfo(absl::StrCat("received ", signal == SIGTERM ? "SIGTERM" : "SIGINT"));
    s->Shutdown();
  });
  s->Wait();
  signal_thread.join();  // Shutdown() only runs from the signal thread
  server->reset();
  return 0;
}
