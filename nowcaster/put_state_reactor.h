// PutState served with gRPC's callback API, on the raw method (ByteBuffer messages): one
// snapshot per stream, assembled in place, without a thread per stream.
//
// Each received message is parsed with the zero-copy codec of proto/chunk_codec.h
// (ReceivedStateChunk keeps the data in gRPC's receive slices), so each chunk's data is
// checksummed and copied once, into the job's snapshot buffer, and checked finite on the way;
// the next read starts when the chunk is in. The first chunk names the job (FindJob: auth and
// job token) and admits the upload (Job::BeginUpload); the end of the stream commits it. On any
// error, a cancelled stream included, the upload is aborted and the job is unchanged.
//
// Codes as before the callback API: INVALID_ARGUMENT (malformed message, no chunk, step,
// total_bytes, offsets, order, non-finite values), DATA_LOSS (CRC mismatch, truncated stream),
// PERMISSION_DENIED / NOT_FOUND / UNAUTHENTICATED, FAILED_PRECONDITION (closed job, old step,
// no graph), RESOURCE_EXHAUSTED (beyond the job's snapshot reservation), CANCELLED. Every
// stream is counted once in requests_total{method="PutState"}.
#ifndef NINO_NOWCASTER_PUT_STATE_REACTOR_H_
#define NINO_NOWCASTER_PUT_STATE_REACTOR_H_

#include <grpcpp/grpcpp.h>
#include <torch/torch.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "nowcaster/job.h"
#include "nowcaster/service_core.h"
#include "proto/chunk_codec.h"
#include "proto/wire.h"

namespace nino::nowcaster {

class PutStateReactor final : public grpc::ServerReadReactor<grpc::ByteBuffer> {
 public:
  // Starts reading; the reply (a serialised v1::PutStateResponse) goes to `response`. `core` is
  // copied; what it points to outlives the call.
  PutStateReactor(const ServiceCore& core, grpc::CallbackServerContext* context,
                  grpc::ByteBuffer* response);

  void OnReadDone(bool ok) override;
  void OnDone() override;

 private:
  ~PutStateReactor() override;

  // The chunk in message_: admits the upload (first chunk) and adds it.
  absl::Status AddChunk();
  absl::Status Admit();
  // The stream ended: commits the snapshot and fills the reply.
  absl::Status Commit();
  // Answers once: counts the call, aborts an open upload unless committed, finishes.
  void Answer(const absl::Status& status);

  const ServiceCore core_;
  grpc::CallbackServerContext* const context_;
  grpc::ByteBuffer* const response_;
  grpc::ByteBuffer message_;
  wire::ReceivedStateChunk chunk_;
  bool first_ = true;
  std::shared_ptr<Job> job_;
  int64_t step_ = 0;
  std::string token_;
  torch::Tensor state_;  // the snapshot being assembled (Job::BeginUpload's buffer)
  bool upload_open_ = false;
  std::unique_ptr<wire::ChunkAssembler> assembler_;
  v1::PutStateResponse reply_;
};

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_PUT_STATE_REACTOR_H_
