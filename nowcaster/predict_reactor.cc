#include "nowcaster/predict_reactor.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/nino/schedule.h"
#include "nowcaster/grpc_status.h"

namespace nino::nowcaster {
namespace {

// gRPC fires a call's deadline from its own clock: a cancellation this close to the deadline
// is the deadline.
constexpr absl::Duration kDeadlineSlack = absl::Milliseconds(10);

}  // namespace

// The part of a Predict call that the job's listeners and the worker share with the reactor:
// the nowcast's inputs and the decision, made once. Held by the reactor and the queued task
// (strong), by the job's listeners (weak).
class PredictCall : public std::enable_shared_from_this<PredictCall> {
 public:
  // Where the call waits (for the message of a deadline that passed).
  enum class Stage { kValidating, kWaitingForGraph, kQueued, kRunning };

  PredictCall(PredictReactor* reactor, const ServiceCore& core, absl::Time deadline)
      : reactor_(reactor), core_(core), deadline_(deadline) {}

  // The first call decides: hands the outcome to the reactor and returns true. Later calls
  // return false and touch nothing.
  bool Decide(absl::Status status, torch::Tensor prediction = {}, double seconds = 0) {
    std::optional<WorkQueue::Ticket> ticket;
    {
      absl::MutexLock lock(&mu_);
      if (decided_) return false;
      decided_ = true;
      ticket = ticket_;
    }
    // A nowcast nobody waits for leaves the queue (its task then finds the call decided).
    if (ticket.has_value()) core_.queue->Cancel(*ticket);
    reactor_->Deliver(std::move(status), std::move(prediction), seconds);  // last
    return true;
  }
  bool decided() const {
    absl::MutexLock lock(&mu_);
    return decided_;
  }
  Stage stage() const {
    absl::MutexLock lock(&mu_);
    return stage_;
  }
  void set_stage(Stage stage) {
    absl::MutexLock lock(&mu_);
    stage_ = stage;
  }

  // Set by the reactor before any listener or worker can see the call.
  void SetWork(std::shared_ptr<Job> job, Job::PinnedContext pinned, int k) {
    job_ = std::move(job);
    pinned_ = std::move(pinned);
    k_ = k;
  }

  // The job's graph is settled (the builder's thread, or the handler's if it already was).
  void OnGraphSettled(const absl::Status& built) {
    if (decided()) return;  // e.g. the job was closed first
    if (!built.ok()) {
      Decide(absl::FailedPreconditionError(
          absl::StrCat("job ", job_->spec().job_id, ": ", built.message())));
      return;
    }
    set_stage(Stage::kQueued);
    std::shared_ptr<PredictCall> self = shared_from_this();
    absl::StatusOr<WorkQueue::Ticket> ticket =
        core_.queue->SubmitWithTicket([self](bool run) { self->RunNowcast(run); });
    if (!ticket.ok()) {
      Decide(ticket.status());
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      if (!decided_) {
        ticket_ = *ticket;
        return;
      }
    }
    core_.queue->Cancel(*ticket);  // decided meanwhile: nobody waits for it
  }

 private:
  // The queued task: the nowcast on a worker (run), or the queue stopped before it ran.
  void RunNowcast(bool run) {
    if (!run) {
      Decide(absl::UnavailableError("the server stopped before the nowcast ran"));
      return;
    }
    const std::function<void()>& hook = core_.options->before_nowcast_for_testing;
    if (hook) hook();
    if (decided()) return;  // abandoned: cancelled, deadline passed, job closed
    if (core_.Expired(deadline_)) {
      Decide(absl::DeadlineExceededError(
          "the request's deadline passed while it waited for a worker"));
      return;
    }
    set_stage(Stage::kRunning);
    const int64_t t0 = core_.env->NowMicros();
    torch::Tensor prediction;
    absl::Status status = GuardTorch("Predict", [&]() -> absl::Status {
      absl::StatusOr<torch::Tensor> result = job_->Nowcast(pinned_.Stack(), k_);
      if (!result.ok()) return result.status();
      prediction = result->to(torch::kCPU, torch::kFloat32).contiguous();
      return absl::OkStatus();
    });
    const double seconds = static_cast<double>(core_.env->NowMicros() - t0) * 1e-6;
    core_.metrics->ObserveNowcastSeconds(seconds);
    pinned_ = {};  // the snapshots may be recycled now
    Decide(std::move(status), std::move(prediction), seconds);
    ReturnFreedHeapAfterNowcast(job_->engine_bytes());  // the nowcast's chunk temporaries
  }

  PredictReactor* const reactor_;  // used once, by the decider
  const ServiceCore core_;
  const absl::Time deadline_;
  // Written by SetWork before the call is shared; then used by the worker alone.
  std::shared_ptr<Job> job_;
  Job::PinnedContext pinned_;
  int k_ = 0;

  mutable absl::Mutex mu_;
  bool decided_ ABSL_GUARDED_BY(mu_) = false;
  Stage stage_ ABSL_GUARDED_BY(mu_) = Stage::kValidating;
  std::optional<WorkQueue::Ticket> ticket_ ABSL_GUARDED_BY(mu_);
};

PredictReactor::PredictReactor(const ServiceCore& core, grpc::CallbackServerContext* context,
                               const v1::PredictRequest& request)
    : core_(core), context_(context), request_(request) {
  call_ = std::make_shared<PredictCall>(this, core_,
                                        ServiceCore::FromCallDeadline(context_->deadline()));
  ++*core_.predicts_in_flight;
  core_.metrics->ChangePredictsInFlight(+1);
}

PredictReactor* PredictReactor::Start(const ServiceCore& core, grpc::CallbackServerContext* context,
                                      const v1::PredictRequest& request) {
  auto* reactor = new PredictReactor(core, context, request);
  std::shared_ptr<PredictCall> call = reactor->call_;  // the reactor may be gone below
  const absl::Status prepared = GuardTorch("Predict", [reactor] { return reactor->Prepare(); });
  if (!prepared.ok()) {
    call->Decide(prepared);
    return reactor;
  }
  std::shared_ptr<Job> job = reactor->job_;
  std::weak_ptr<PredictCall> weak = call;
  // Both listeners may decide the call at once (job closed, graph failed); after that the
  // reactor is not touched here again.
  reactor->close_listener_ = job->AddCloseListener([weak, id = job->spec().job_id] {
    if (std::shared_ptr<PredictCall> c = weak.lock()) {
      c->Decide(absl::FailedPreconditionError(
          absl::StrCat("job ", id, " was closed before its prediction was sent")));
    }
  });
  call->set_stage(PredictCall::Stage::kWaitingForGraph);
  job->WhenEngineSettled([weak](const absl::Status& built) {
    if (std::shared_ptr<PredictCall> c = weak.lock()) c->OnGraphSettled(built);
  });
  return reactor;
}

absl::Status PredictReactor::Prepare() {
  absl::StatusOr<std::shared_ptr<Job>> found =
      core_.find_job(*context_, request_.job_id(), request_.job_token());
  if (!found.ok()) return found.status();
  job_ = std::move(*found);
  const JobSpec& spec = job_->spec();
  if (request_.step() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("step: ", request_.step(), ", must be >= 0"));
  }
  k_ = request_.k() == 0 ? HorizonAt(spec.k_schedule, request_.step(), spec.period) : request_.k();
  if (k_ < 1 || k_ > spec.seq_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("k: ", request_.k(), ", expected 1..", spec.seq_len, " (0 = the schedule)"));
  }
  if (request_.max_chunk_bytes() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_chunk_bytes: ", request_.max_chunk_bytes(),
                                                   ", expected >= 0 (0 = server default)"));
  }
  chunk_bytes_ = std::min(core_.options->max_chunk_bytes, request_.max_chunk_bytes() == 0
                                                              ? kDefaultPredictChunkBytes
                                                              : request_.max_chunk_bytes());
  absl::StatusOr<Job::PinnedContext> pinned = job_->PinContext(request_.step());
  if (!pinned.ok()) return pinned.status();
  last_seq_ = pinned->last_seq;
  call_->SetWork(job_, std::move(*pinned), k_);
  return absl::OkStatus();
}

void PredictReactor::Deliver(absl::Status status, torch::Tensor prediction,
                             double nowcast_seconds) {
  if (status.ok()) {
    status = GuardTorch("Predict", [&]() -> absl::Status {
      prediction_ = std::move(prediction);
      payload_ = absl::string_view(reinterpret_cast<const char*>(prediction_.data_ptr<float>()),
                                   static_cast<size_t>(prediction_.numel()) * sizeof(float));
      absl::StatusOr<std::vector<wire::ChunkSpan>> spans =
          wire::PlanChunks(static_cast<int64_t>(payload_.size()), chunk_bytes_);
      if (!spans.ok()) return spans.status();
      spans_ = std::move(*spans);
      return absl::OkStatus();
    });
  }
  if (!status.ok()) {
    Answer(status);
    return;
  }
  nowcast_seconds_ = nowcast_seconds;
  next_span_ = 0;
  WriteChunk();
}

void PredictReactor::WriteChunk() {
  const wire::ChunkSpan& span = spans_[next_span_];
  chunk_ = wire::MakePredictionChunk(job_->spec().job_id, request_.step(), k_, payload_, span);
  if (span.index == 0) chunk_.set_nowcast_seconds(nowcast_seconds_);
  StartWrite(&chunk_);  // OnWriteDone goes on; nothing here touches the reactor after this
}

void PredictReactor::OnWriteDone(bool ok) {
  if (!ok) {
    Answer(absl::CancelledError(absl::StrCat("the client stopped reading after ", next_span_,
                                             " of ", spans_.size(), " chunks")));
    return;
  }
  core_.metrics->AddBytesOut(spans_[next_span_].size_bytes);
  if (++next_span_ < spans_.size()) {
    WriteChunk();
    return;
  }
  job_->FinishPrediction(last_seq_, static_cast<int64_t>(payload_.size()));
  Answer(absl::OkStatus());
}

void PredictReactor::Answer(const absl::Status& status) {
  core_.metrics->CountRequest("Predict", status.code());
  Finish(ToGrpcStatus(status));  // last: OnDone may follow on another thread
}

absl::Status PredictReactor::CancelStatus() const {
  const absl::Time deadline = ServiceCore::FromCallDeadline(context_->deadline());
  if (!core_.Expired(deadline - kDeadlineSlack)) {
    return absl::CancelledError("the client cancelled the call");
  }
  if (call_->stage() == PredictCall::Stage::kWaitingForGraph) {
    return absl::DeadlineExceededError(absl::StrCat(
        "the deadline passed while the NiNo graph of job ", request_.job_id(), " was being built"));
  }
  return absl::DeadlineExceededError("the deadline passed before the nowcast finished");
}

void PredictReactor::OnCancel() { call_->Decide(CancelStatus()); }

void PredictReactor::OnDone() {
  if (job_ != nullptr) job_->RemoveCloseListener(close_listener_);
  --*core_.predicts_in_flight;
  core_.metrics->ChangePredictsInFlight(-1);
  delete this;
}

}  // namespace nino::nowcaster
