// The nino.v1.Nowcaster gRPC service: jobs, snapshot uploads, predictions.
//
// Threads. Predict and PutState are served with gRPC's callback API (predict_reactor.h,
// put_state_reactor.h): they hold no thread while they wait, whether for a chunk, for a job's
// NiNo graph or for a nowcast worker; a waiting Predict is answered by a callback when its
// prediction is done, fails, its job closes, the server stops or the client leaves. The unary
// methods (RegisterJob, GetJob, CloseJob, ListJobs) stay synchronous, on gRPC's thread pool
// bounded by --max_rpc_threads: they are short, except RegisterJob's bounded wait for small
// graph builds (--register_wait_ms), which must not block gRPC's callback threads. Nowcasts
// run on --workers threads (WorkQueue), graph builds on one builder thread.
//
// Every call does its work in functions returning absl::Status and is counted once in the
// metrics with its final code; ToGrpcStatus is the only conversion. LibTorch's c10::Error never
// crosses the RPC boundary or a thread (GuardTorch). Deadlines and timings read the clock of
// the Env given at construction.
#ifndef NINO_NOWCASTER_NOWCASTER_SERVICE_H_
#define NINO_NOWCASTER_NOWCASTER_SERVICE_H_

#include <grpcpp/grpcpp.h>
#include <torch/torch.h>

#include <atomic>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/env/env.h"
#include "nino/v1/nowcaster.grpc.pb.h"
#include "nowcaster/auth.h"
#include "nowcaster/job_registry.h"
#include "nowcaster/memory_budget.h"
#include "nowcaster/metrics.h"
#include "nowcaster/model_store.h"
#include "nowcaster/options.h"
#include "nowcaster/service_core.h"
#include "nowcaster/work_queue.h"

namespace nino::nowcaster {

// Predict and PutState (raw: ByteBuffer messages for the zero-copy chunk codec) on the
// callback API, the rest synchronous.
using NowcasterServiceBase = v1::Nowcaster::WithCallbackMethod_Predict<
    v1::Nowcaster::WithRawCallbackMethod_PutState<v1::Nowcaster::Service>>;

class NowcasterService final : public NowcasterServiceBase {
 public:
  // `models`, `metrics` and `env` must outlive the service; `options` is copied. `auth` checks
  // every call's bearer token (auth.h; default: authentication off). `env` is the clock of
  // deadlines and timings (default: the process's Env).
  NowcasterService(const NowcasterOptions& options, torch::Device device, const ModelStore* models,
                   NowcasterMetrics* metrics, Authenticator auth = Authenticator(),
                   Env* env = Env::Default());
  ~NowcasterService() override;

  // Validates the job, reserves its whole footprint, queues the build of its graph and
  // NowcastEngine, waits for it up to options.register_wait_ms (within the call's deadline, by
  // the Env's clock) and returns a fresh token. NOT_FOUND (unknown model), ALREADY_EXISTS,
  // INVALID_ARGUMENT (naming the field, or a layout the graph cannot map, when the build failed
  // within the wait), RESOURCE_EXHAUSTED (memory budget, builder queue).
  grpc::Status RegisterJob(grpc::ServerContext* context, const v1::RegisterJobRequest* request,
                           v1::RegisterJobResponse* response) override;
  // PutState: one snapshot per stream, assembled in place; on any error the job is unchanged
  // (put_state_reactor.h).
  grpc::ServerReadReactor<grpc::ByteBuffer>* PutState(grpc::CallbackServerContext* context,
                                                      grpc::ByteBuffer* response) override;
  // Runs the nowcast on a worker (bounded queue, deadline honoured), streams the prediction and
  // then drops the snapshots it used (predict_reactor.h).
  grpc::ServerWriteReactor<v1::PredictionChunk>* Predict(
      grpc::CallbackServerContext* context, const v1::PredictRequest* request) override;
  // Closes the job; its waiting Predicts are answered FAILED_PRECONDITION.
  grpc::Status CloseJob(grpc::ServerContext* context, const v1::JobRef* request,
                        v1::CloseJobResponse* response) override;
  grpc::Status GetJob(grpc::ServerContext* context, const v1::JobRef* request,
                      v1::JobStatus* response) override;
  grpc::Status ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override;

  // Stops the builder and the nowcast workers; queued requests fail with UNAVAILABLE. Call
  // after the gRPC server stopped (or while it drains). Idempotent.
  void StopWorkers();

  // Predict requests waiting for a worker; workers running a nowcast; Predict calls accepted
  // and not yet done (waiting for a graph or a worker, running, or streaming).
  int queue_depth() const { return queue_.pending(); }
  int busy_workers() const { return queue_.busy(); }
  int64_t predicts_in_flight() const { return predicts_in_flight_.load(); }
  int64_t reserved_bytes() const { return budget_.reserved_bytes(); }
  size_t num_jobs() const { return jobs_.size(); }

 private:
  absl::Status DoRegisterJob(const v1::RegisterJobRequest& request, const Principal& caller,
                             absl::Time deadline, v1::RegisterJobResponse* response);
  // The open job `job_id` if `token` is its job token and the call's bearer token belongs to
  // the principal that registered it (auth.h codes first, then NOT_FOUND / PERMISSION_DENIED).
  absl::StatusOr<std::shared_ptr<Job>> FindJob(const grpc::ServerContextBase& context,
                                               absl::string_view job_id,
                                               absl::string_view token) const;
  grpc::Status Reply(absl::string_view method, const absl::Status& status);
  void UpdateJobGauges();

  const NowcasterOptions options_;
  const torch::Device device_;
  const ModelStore* const models_;
  NowcasterMetrics* const metrics_;
  const Authenticator auth_;
  Env* const env_;
  MemoryBudget budget_;
  JobRegistry jobs_;
  std::atomic<int64_t> predicts_in_flight_{0};
  WorkQueue queue_;
  WorkQueue builder_;  // one thread building jobs' NowcastEngines, in registration order
  ServiceCore core_;   // what Predict and PutState calls use of the above
};

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_NOWCASTER_SERVICE_H_
