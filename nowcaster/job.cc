#include "nowcaster/job.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "nowcaster/token.h"

namespace nino::nowcaster {

Job::Job(JobSpec spec, std::string token, std::unique_ptr<NowcastEngine> engine,
         MemoryBudget* budget, int64_t reservation_bytes)
    : spec_(std::move(spec)),
      token_(std::move(token)),
      engine_(std::move(engine)),
      budget_(budget),
      reservation_bytes_(reservation_bytes) {}

Job::~Job() { Close(); }

bool Job::TokenMatches(absl::string_view token) const { return TokensEqual(token, token_); }

int64_t Job::HeldBytesLocked() const {
  return (static_cast<int64_t>(held_.size()) + uploads_in_flight_) * spec_.state_bytes();
}

absl::Status Job::BeginUpload(int64_t step) {
  absl::MutexLock lock(&mu_);
  if (closed_) {
    return absl::FailedPreconditionError(absl::StrCat("job ", spec_.job_id, " is closed"));
  }
  if (!held_.empty() && step <= held_.back().step) {
    return absl::FailedPreconditionError(
        absl::StrCat("step ", step, " is not after the newest held snapshot (step ",
                     held_.back().step, ") of job ", spec_.job_id));
  }
  if (HeldBytesLocked() + spec_.state_bytes() > reservation_bytes_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "job ", spec_.job_id, ": another snapshot of ", spec_.state_bytes(),
        " bytes would exceed the job's reservation of ", reservation_bytes_, " bytes (",
        held_.size(), " held, ", uploads_in_flight_, " uploading; upload one snapshot at a time)"));
  }
  ++uploads_in_flight_;
  return absl::OkStatus();
}

void Job::AbortUpload() {
  absl::MutexLock lock(&mu_);
  --uploads_in_flight_;
}

absl::StatusOr<int> Job::CommitUpload(int64_t step, torch::Tensor state, int64_t bytes_received) {
  absl::MutexLock lock(&mu_);
  --uploads_in_flight_;
  if (closed_) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", spec_.job_id, " was closed during the upload"));
  }
  if (!held_.empty() && step <= held_.back().step) {
    return absl::FailedPreconditionError(absl::StrCat(
        "step ", step, " is not after the newest held snapshot (step ", held_.back().step,
        ") of job ", spec_.job_id, "; it arrived during this upload"));
  }
  held_.push_back({step, next_seq_++, std::move(state)});
  while (static_cast<int64_t>(held_.size()) > spec_.ctx) held_.pop_front();
  last_state_step_ = step;
  bytes_in_ += bytes_received;
  return static_cast<int>(held_.size());
}

absl::StatusOr<Job::Context> Job::TakeContext(int64_t step) const {
  std::vector<torch::Tensor> states;
  uint64_t last_seq = 0;
  {
    absl::MutexLock lock(&mu_);
    if (static_cast<int64_t>(held_.size()) != spec_.ctx) {
      return absl::FailedPreconditionError(absl::StrCat("job ", spec_.job_id, " holds ",
                                                        held_.size(), " of the ", spec_.ctx,
                                                        " snapshots a NiNo step needs"));
    }
    const int64_t oldest = held_.front().step, newest = held_.back().step;
    if (newest > step || oldest <= step - spec_.period) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the held snapshots (steps ", oldest, "..", newest, ") are not the context of NiNo step ",
          step, " (expected steps in (", step - spec_.period, ", ", step, "])"));
    }
    for (const Snapshot& s : held_) states.push_back(s.values);
    last_seq = held_.back().seq;
  }
  Context context;
  context.states = torch::stack(states);  // outside the lock: copies ctx * P floats
  context.last_seq = last_seq;
  return context;
}

absl::StatusOr<torch::Tensor> Job::Nowcast(const torch::Tensor& states, int k) const {
  absl::MutexLock lock(&engine_mu_);
  try {
    return engine_->Nowcast(states, k);
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("nowcast failed in LibTorch: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("nowcast failed: ", e.what()));
  }
}

void Job::FinishPrediction(uint64_t last_seq, int64_t bytes_out) {
  absl::MutexLock lock(&mu_);
  while (!held_.empty() && held_.front().seq <= last_seq) held_.pop_front();
  ++predictions_;
  bytes_out_ += bytes_out;
}

void Job::Close() {
  std::deque<Snapshot> freed;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    closed_ = true;
    freed.swap(held_);
  }
  budget_->Release(reservation_bytes_);
}

v1::JobStatus Job::Status() const {
  v1::JobStatus s;
  s.set_job_id(spec_.job_id);
  s.set_nino_model(spec_.nino_model);
  s.set_num_params(spec_.num_params);
  absl::MutexLock lock(&mu_);
  s.set_states_held(static_cast<int32_t>(held_.size()));
  s.set_last_state_step(last_state_step_);
  s.set_predictions(predictions_);
  s.set_bytes_in(bytes_in_);
  s.set_bytes_out(bytes_out_);
  s.set_memory_bytes(HeldBytesLocked());
  return s;
}

}  // namespace nino::nowcaster
