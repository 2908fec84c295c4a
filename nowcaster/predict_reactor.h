// Predict served with gRPC's callback API: a waiting call holds no thread.
//
// A call is validated at once (caller, job token, step, k, chunk size, the held context, which
// is pinned, not copied), then waits for its job's NiNo graph (a Job::WhenEngineSettled
// listener), then for a worker (a WorkQueue ticket), runs on the worker and streams the
// prediction's chunks from gRPC's write callbacks, one write at a time. What comes first
// decides the answer, once: the prediction or the nowcast's error, the client cancelling or its
// deadline passing (OnCancel), the job being closed (a Job close listener: FAILED_PRECONDITION),
// the queue refusing (RESOURCE_EXHAUSTED) or stopping (UNAVAILABLE). Whoever comes later finds
// the call decided and does nothing; a queued nowcast of a decided call is taken out of the
// queue, and a worker skips one it had already taken. The reactor deletes itself in OnDone,
// after gRPC is done with the call; nothing refers to it after it was decided but gRPC.
//
// Codes as before the callback API: INVALID_ARGUMENT (step, k, max_chunk_bytes),
// NOT_FOUND / PERMISSION_DENIED / UNAUTHENTICATED (job, tokens), FAILED_PRECONDITION (context
// not held, graph failed, job closed), RESOURCE_EXHAUSTED (queue full), DEADLINE_EXCEEDED,
// CANCELLED, UNAVAILABLE (server stopping), INTERNAL (LibTorch). Every call is counted once in
// requests_total{method="Predict"}.
#ifndef NINO_NOWCASTER_PREDICT_REACTOR_H_
#define NINO_NOWCASTER_PREDICT_REACTOR_H_

#include <grpcpp/grpcpp.h>
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "nino/v1/nowcaster.pb.h"
#include "nowcaster/job.h"
#include "nowcaster/service_core.h"
#include "proto/wire.h"

namespace nino::nowcaster {

class PredictCall;

class PredictReactor final : public grpc::ServerWriteReactor<v1::PredictionChunk> {
 public:
  // Starts serving `request` (copied) on `context`; returns the reactor for gRPC. `core` is
  // copied; what it points to outlives the call.
  static PredictReactor* Start(const ServiceCore& core, grpc::CallbackServerContext* context,
                               const v1::PredictRequest& request);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  friend class PredictCall;

  PredictReactor(const ServiceCore& core, grpc::CallbackServerContext* context,
                 const v1::PredictRequest& request);
  ~PredictReactor() override = default;

  // Validation up to the pinned context; sets job_ and the call's computation.
  absl::Status Prepare();
  // Called once, by whoever decided the call (PredictCall::Decide): answers `status`, or
  // streams `prediction` ([P] float32, CPU, contiguous). The reactor may be gone when it
  // returns.
  void Deliver(absl::Status status, torch::Tensor prediction, double nowcast_seconds);
  void WriteChunk();
  void Answer(const absl::Status& status);
  absl::Status CancelStatus() const;

  const ServiceCore core_;
  grpc::CallbackServerContext* const context_;
  const v1::PredictRequest request_;
  std::shared_ptr<PredictCall> call_;
  std::shared_ptr<Job> job_;
  Job::ListenerId close_listener_ = 0;
  int k_ = 0;
  int64_t chunk_bytes_ = 0;
  uint64_t last_seq_ = 0;  // the newest snapshot of the context (Job::FinishPrediction)
  // Streaming: the prediction, its chunks and the one being written.
  torch::Tensor prediction_;
  absl::string_view payload_;
  std::vector<wire::ChunkSpan> spans_;
  size_t next_span_ = 0;
  double nowcast_seconds_ = 0;
  v1::PredictionChunk chunk_;
};

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_PREDICT_REACTOR_H_
