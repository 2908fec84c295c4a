// The nino.v1.Nowcaster gRPC service (synchronous API): jobs, snapshot uploads, predictions.
//
// Every handler does its work in a Do* function returning absl::Status and finishes through
// Reply(), which counts the call in the metrics and converts the status with ToGrpcStatus (the
// only conversion). LibTorch's c10::Error never crosses the RPC boundary or a thread.
#ifndef NINO_NOWCASTER_NOWCASTER_SERVICE_H_
#define NINO_NOWCASTER_NOWCASTER_SERVICE_H_

#include <grpcpp/grpcpp.h>
#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "nino/v1/nowcaster.grpc.pb.h"
#include "nowcaster/auth.h"
#include "nowcaster/job_registry.h"
#include "nowcaster/memory_budget.h"
#include "nowcaster/metrics.h"
#include "nowcaster/model_store.h"
#include "nowcaster/options.h"
#include "nowcaster/work_queue.h"
#include "proto/chunk_codec.h"

namespace nino::nowcaster {

class NowcasterService final : public v1::Nowcaster::Service {
 public:
  // `models` and `metrics` must outlive the service; `options` is copied. `auth` checks every
  // call's bearer token (auth.h; default: authentication off).
  NowcasterService(const NowcasterOptions& options, torch::Device device, const ModelStore* models,
                   NowcasterMetrics* metrics, Authenticator auth = Authenticator());
  ~NowcasterService() override;

  // Validates the job, reserves its snapshot memory, queues the build of its graph and
  // NowcastEngine, waits for it up to options.register_wait_ms and returns a fresh token.
  // NOT_FOUND (unknown model), ALREADY_EXISTS, INVALID_ARGUMENT (naming the field, or a layout
  // the graph cannot map, when the build failed within the wait), RESOURCE_EXHAUSTED (memory
  // budget, builder queue).
  grpc::Status RegisterJob(grpc::ServerContext* context, const v1::RegisterJobRequest* request,
                           v1::RegisterJobResponse* response) override;
  // PutState: one snapshot per stream, assembled in place; on any error the job is unchanged.
  // Registered in place of the generated PutState handler (same wire format): chunks are read
  // with the zero-copy codec of proto/chunk_codec.h, so each chunk's data is checksummed and
  // copied once, from gRPC's receive buffers into the snapshot, and checked finite on the way.
  using PutStateStream = grpc::ServerReaderWriter<v1::PutStateResponse, wire::ReceivedStateChunk>;
  grpc::Status PutStateZeroCopy(grpc::ServerContext* context, PutStateStream* stream);
  // Runs the nowcast on a worker (bounded queue, deadline honoured), streams the prediction and
  // then drops the snapshots it used.
  grpc::Status Predict(grpc::ServerContext* context, const v1::PredictRequest* request,
                       grpc::ServerWriter<v1::PredictionChunk>* writer) override;
  grpc::Status CloseJob(grpc::ServerContext* context, const v1::JobRef* request,
                        v1::CloseJobResponse* response) override;
  grpc::Status GetJob(grpc::ServerContext* context, const v1::JobRef* request,
                      v1::JobStatus* response) override;
  grpc::Status ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override;

  // Stops the nowcast workers; queued requests fail with UNAVAILABLE. Call after the gRPC
  // server stopped (or while it drains). Idempotent.
  void StopWorkers();

  int queue_depth() const { return queue_.pending(); }
  int64_t reserved_bytes() const { return budget_.reserved_bytes(); }
  size_t num_jobs() const { return jobs_.size(); }

 private:
  absl::Status DoRegisterJob(const v1::RegisterJobRequest& request, const Principal& caller,
                             absl::Time deadline, v1::RegisterJobResponse* response);
  // The open job `job_id` if `token` is its job token and the call's bearer token belongs to
  // the principal that registered it (auth.h codes first, then NOT_FOUND / PERMISSION_DENIED).
  absl::StatusOr<std::shared_ptr<Job>> FindJob(const grpc::ServerContext& context,
                                               absl::string_view job_id,
                                               absl::string_view token) const;
  absl::Status DoPutState(grpc::ServerContext* context, PutStateStream* stream,
                          v1::PutStateResponse* response);
  absl::Status DoPredict(grpc::ServerContext* context, const v1::PredictRequest& request,
                         grpc::ServerWriter<v1::PredictionChunk>* writer);
  grpc::Status Reply(absl::string_view method, const absl::Status& status);
  void UpdateJobGauges();

  const NowcasterOptions options_;
  const torch::Device device_;
  const ModelStore* const models_;
  NowcasterMetrics* const metrics_;
  const Authenticator auth_;
  MemoryBudget budget_;
  JobRegistry jobs_;
  WorkQueue queue_;
  WorkQueue builder_;  // one thread building jobs' NowcastEngines, in registration order
};

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_NOWCASTER_SERVICE_H_
