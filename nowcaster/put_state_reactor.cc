#include "nowcaster/put_state_reactor.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "nowcaster/grpc_status.h"
#include "nowcaster/token.h"

namespace nino::nowcaster {

PutStateReactor::PutStateReactor(const ServiceCore& core, grpc::CallbackServerContext* context,
                                 grpc::ByteBuffer* response)
    : core_(core), context_(context), response_(response) {
  StartRead(&message_);
}

PutStateReactor::~PutStateReactor() {
  if (upload_open_) job_->AbortUpload(std::move(state_));
}

void PutStateReactor::OnReadDone(bool ok) {
  if (!ok) {  // the client finished the stream (or it broke)
    Answer(GuardTorch("PutState", [this] { return Commit(); }));
    return;
  }
  const absl::Status added = GuardTorch("PutState", [this] { return AddChunk(); });
  if (!added.ok()) {
    Answer(added);
    return;
  }
  StartRead(&message_);
}

absl::Status PutStateReactor::AddChunk() {
  const absl::Status parsed = chunk_.Parse(message_);
  message_.Clear();  // the chunk holds the slices it needs
  if (first_) {
    if (!parsed.ok()) return parsed;
    first_ = false;
    if (absl::Status admitted = Admit(); !admitted.ok()) return admitted;
  } else if (!parsed.ok()) {
    return absl::Status(parsed.code(), absl::StrCat("chunk ", assembler_->received_chunks(), ": ",
                                                    parsed.message()));
  }
  core_.metrics->AddBytesIn(chunk_.data_size());
  if (!TokensEqual(chunk_.job_token(), token_)) {
    return absl::PermissionDeniedError(absl::StrCat("chunk ", assembler_->received_chunks(),
                                                    ": job_token differs from the stream's"));
  }
  return assembler_->Add(chunk_.fields());
}

absl::Status PutStateReactor::Admit() {
  absl::StatusOr<std::shared_ptr<Job>> found =
      core_.find_job(*context_, chunk_.job_id(), chunk_.job_token());
  if (!found.ok()) return found.status();
  std::shared_ptr<Job> job = std::move(*found);
  const JobSpec& spec = job->spec();
  step_ = chunk_.step();
  if (step_ < 0) return absl::InvalidArgumentError(absl::StrCat("step: ", step_, ", must be >= 0"));
  if (chunk_.total_bytes() != spec.state_bytes()) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk 0: total_bytes ", chunk_.total_bytes(), ", but job ", spec.job_id,
                     " has ", spec.num_params, " parameters = ", spec.state_bytes(), " bytes"));
  }
  absl::StatusOr<torch::Tensor> buffer = job->BeginUpload(step_);
  if (!buffer.ok()) return buffer.status();
  job_ = std::move(job);
  state_ = std::move(*buffer);  // a recycled snapshot buffer of the job, or a new one
  upload_open_ = true;
  token_ = chunk_.job_token();
  // The snapshot is assembled directly in its final tensor: no second copy of the vector.
  assembler_ = std::make_unique<wire::ChunkAssembler>(state_.data_ptr<float>(), spec.state_bytes(),
                                                      core_.options->max_chunk_bytes,
                                                      /*check_finite=*/true);
  return absl::OkStatus();
}

absl::Status PutStateReactor::Commit() {
  if (context_->IsCancelled()) {
    return absl::CancelledError(
        first_ ? std::string("the client cancelled the upload")
               : absl::StrCat("the client cancelled the upload of step ", step_));
  }
  if (first_) return absl::InvalidArgumentError("PutState stream carried no chunk");
  if (absl::Status finished = assembler_->Finish(); !finished.ok()) return finished;
  upload_open_ = false;  // CommitUpload ends the upload, committed or not
  absl::StatusOr<int> held =
      job_->CommitUpload(step_, std::move(state_), assembler_->received_bytes());
  if (!held.ok()) return held.status();
  reply_.set_step(step_);
  reply_.set_states_held(*held);
  reply_.set_bytes_received(assembler_->received_bytes());
  return absl::OkStatus();
}

void PutStateReactor::Answer(const absl::Status& status) {
  // A failed upload changes nothing: its buffer and reservation go back before the client
  // learns the outcome.
  if (upload_open_) {
    upload_open_ = false;
    job_->AbortUpload(std::move(state_));
  }
  chunk_ = wire::ReceivedStateChunk();  // the last chunk's receive slices
  if (status.ok()) {
    const std::string bytes = reply_.SerializeAsString();
    grpc::Slice slice(bytes);
    *response_ = grpc::ByteBuffer(&slice, 1);
  }
  core_.metrics->CountRequest("PutState", status.code());
  Finish(ToGrpcStatus(status));  // last: OnDone may follow on another thread
}

void PutStateReactor::OnDone() { delete this; }

}  // namespace nino::nowcaster
