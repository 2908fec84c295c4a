// The nowcaster daemon as a library: the nino.v1.Nowcaster service plus grpc.health.v1,
// server reflection and a Prometheus /metrics endpoint, with a graceful stop.
//
//   NowcasterOptions options;             // every knob, with defaults (options.h)
//   options.address = "127.0.0.1:0";
//   auto server = NowcasterServer::BuildAndStart(options);
//   ... server->port() ...
//   server->Shutdown();                   // e.g. from a SIGTERM thread
//   server->Wait();
#ifndef NINO_NOWCASTER_NOWCASTER_SERVER_H_
#define NINO_NOWCASTER_NOWCASTER_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/env/env.h"
#include "nowcaster/metrics.h"
#include "nowcaster/metrics_http_server.h"
#include "nowcaster/model_store.h"
#include "nowcaster/nowcaster_service.h"
#include "nowcaster/options.h"

namespace nino::nowcaster {

// Health services (grpc.health.v1). Readiness: "" (the whole server) and kServiceName turn
// NOT_SERVING when the server starts draining. Liveness: kLivenessService stays SERVING until
// the gRPC server stops (a draining server is alive; a liveness probe must not kill it).
inline constexpr char kServiceName[] = "nino.v1.Nowcaster";
inline constexpr char kLivenessService[] = "liveness";

// Thread-safe.
class NowcasterServer {
 public:
  // Validates the options (CheckExposure included: a non-loopback address needs TLS and tokens
  // or allow_insecure), reads the TLS, tokens and metrics-token files, loads the models, starts
  // gRPC (health SERVING) and, if a metrics port is set, /metrics; logs the address, transport,
  // authentication, metrics port, models, device and threads (never a token).
  // INVALID_ARGUMENT for bad options or unreadable/malformed security files; the loader's
  // errors for models; UNAVAILABLE if a port cannot be bound. `env` (not owned, outlives the
  // server) is the clock of the service's deadlines and timings.
  //
  // Threads: Predict and PutState run on gRPC's callback API and hold no thread while they
  // wait; options.max_rpc_threads bounds gRPC's synchronous pool, which serves RegisterJob,
  // GetJob, CloseJob, ListJobs and reflection (nowcaster_service.h).
  static absl::StatusOr<std::unique_ptr<NowcasterServer>> BuildAndStart(NowcasterOptions options,
                                                                        Env* env = Env::Default());

  ~NowcasterServer();  // Shutdown()
  NowcasterServer(const NowcasterServer&) = delete;
  NowcasterServer& operator=(const NowcasterServer&) = delete;

  // The bound gRPC port and /metrics port (0 when off).
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  const ModelStore& models() const { return models_; }
  // Predict requests waiting for a worker; workers running a nowcast; Predict calls accepted
  // and not yet done.
  int queue_depth() const { return service_->queue_depth(); }
  int busy_workers() const { return service_->busy_workers(); }
  int64_t predicts_in_flight() const { return service_->predicts_in_flight(); }

  // Readiness ("" and kServiceName) NOT_SERVING; liveness stays SERVING; calls are still
  // served.
  void SetNotServing();

  // Graceful stop: NOT_SERVING, serves on for options.lame_duck_ms, stops accepting calls,
  // gives in-flight calls options.shutdown_deadline_ms (then cancels them), stops the workers
  // and /metrics. Idempotent; concurrent callers return when it is done.
  void Shutdown();

  // Blocks until Shutdown() has finished.
  void Wait();

 private:
  NowcasterServer(NowcasterOptions options, ModelStore models);

  const NowcasterOptions options_;
  const ModelStore models_;
  NowcasterMetrics metrics_;
  std::unique_ptr<NowcasterService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MetricsHttpServer> metrics_http_;
  int port_ = 0;
  int metrics_port_ = 0;

  absl::Mutex shutdown_mu_;  // held for the whole of Shutdown()
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
  absl::Notification done_;
};

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_NOWCASTER_SERVER_H_
