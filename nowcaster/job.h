// One registered job: its layout and NowcastEngine (built once at registration), the parameter
// snapshots it holds for the next NiNo step, and its counters.
#ifndef NINO_NOWCASTER_JOB_H_
#define NINO_NOWCASTER_JOB_H_

#include <torch/torch.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/nino/nowcast_engine.h"
#include "nino/v1/nowcaster.pb.h"
#include "nowcaster/job_spec.h"
#include "nowcaster/memory_budget.h"

namespace nino::nowcaster {

// Thread-safe. Snapshot memory: the job holds at most ctx snapshots plus the ones being
// uploaded, all within `reservation_bytes` taken from the budget at registration.
class Job {
 public:
  // `reservation_bytes` were reserved from `budget` by the caller; the job returns them on
  // Close() (or destruction).
  Job(JobSpec spec, std::string token, std::unique_ptr<NowcastEngine> engine, MemoryBudget* budget,
      int64_t reservation_bytes);
  ~Job();
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  const JobSpec& spec() const { return spec_; }
  const NeuralGraph& graph() const { return engine_->graph(); }
  bool TokenMatches(absl::string_view token) const;

  // PutState, first chunk seen: admits an upload of snapshot `step`. FAILED_PRECONDITION if the
  // job is closed or `step` is not after the newest held snapshot; RESOURCE_EXHAUSTED if one
  // more snapshot would exceed the job's reservation. After OK the caller calls exactly one of
  // CommitUpload / AbortUpload.
  absl::Status BeginUpload(int64_t step);
  // The upload failed: nothing changes but the released reservation.
  void AbortUpload();
  // Adds the complete snapshot `state` ([P] float32, CPU) as the newest one and drops the oldest
  // beyond ctx; returns the number held. FAILED_PRECONDITION (nothing added) if the job was
  // closed or a snapshot at `step` or later was committed meanwhile.
  absl::StatusOr<int> CommitUpload(int64_t step, torch::Tensor state, int64_t bytes_received);

  // The held snapshots as the context of the NiNo step `step`.
  struct Context {
    torch::Tensor states;   // [ctx, P] float32, oldest first
    uint64_t last_seq = 0;  // identifies the newest snapshot used
  };
  // FAILED_PRECONDITION unless exactly ctx snapshots are held, all at steps in
  // (step - period, step].
  absl::StatusOr<Context> TakeContext(int64_t step) const;
  // One NiNo step on `states` ([ctx, P]) with horizon k: predicted [P] float32. One nowcast at a
  // time per job (the engine is thread-compatible); a c10::Error becomes INTERNAL.
  absl::StatusOr<torch::Tensor> Nowcast(const torch::Tensor& states, int k) const;
  // The prediction from `Context` reached the client: drops the snapshots it used (as the
  // official optimizer clears its history) and counts it.
  void FinishPrediction(uint64_t last_seq, int64_t bytes_out);

  // Frees the held snapshots and returns the reservation; later uploads fail. Idempotent.
  void Close();

  v1::JobStatus Status() const;

 private:
  struct Snapshot {
    int64_t step;
    uint64_t seq;
    torch::Tensor values;  // [P] float32
  };
  int64_t HeldBytesLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const JobSpec spec_;
  const std::string token_;
  const std::unique_ptr<NowcastEngine> engine_;
  MemoryBudget* const budget_;
  const int64_t reservation_bytes_;

  mutable absl::Mutex engine_mu_;  // serialises Nowcast
  mutable absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Snapshot> held_ ABSL_GUARDED_BY(mu_);
  int uploads_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t last_state_step_ ABSL_GUARDED_BY(mu_) = -1;
  int64_t predictions_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t bytes_in_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t bytes_out_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_JOB_H_
