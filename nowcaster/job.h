// One registered job: its layout and NowcastEngine (built once, in the background after
// registration), the parameter snapshots it holds for the next NiNo step, and its counters.
#ifndef NINO_NOWCASTER_JOB_H_
#define NINO_NOWCASTER_JOB_H_

#include <torch/torch.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/nino/nowcast_engine.h"
#include "nino/v1/nowcaster.pb.h"
#include "nowcaster/job_spec.h"
#include "nowcaster/memory_budget.h"

namespace nino::nowcaster {

// Thread-safe. Memory: at registration the job's whole footprint (job_footprint.h) was taken
// from the budget: `snapshot_bytes` for snapshots, `engine_bytes` for its NowcastEngine (graph,
// indices, positional encoding, build and nowcast working memory). The job holds at most ctx
// snapshots plus the ones being uploaded, all within `snapshot_bytes`. Snapshot
// buffers are recycled: a snapshot dropped from the ring becomes the buffer of a later upload,
// so a long-running job page-faults its snapshot memory in once (buffers are mapped with
// transparent huge pages where the kernel allows).
class Job {
 public:
  // `snapshot_bytes + engine_bytes` were reserved from `budget` by the caller; the job returns
  // the snapshot bytes on Close() and the engine bytes on destruction (when the last build or
  // nowcast holding the job let go of it). The engine arrives later, through SetEngine.
  Job(JobSpec spec, std::string token, MemoryBudget* budget, int64_t snapshot_bytes,
      int64_t engine_bytes = 0);
  ~Job();
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  const JobSpec& spec() const { return spec_; }
  // Bytes reserved for the engine (graph and working memory), beside the snapshots'.
  int64_t engine_bytes() const { return engine_bytes_; }
  bool TokenMatches(absl::string_view token) const;

  // The builder's result: the engine, or why it could not be built. The first call settles it;
  // later calls are ignored.
  void SetEngine(absl::StatusOr<std::unique_ptr<NowcastEngine>> engine);
  // OK once the engine is built, the build's error if it failed, DEADLINE_EXCEEDED if neither
  // happened by `deadline`.
  absl::Status WaitForEngine(absl::Time deadline) const;
  // Same, waiting at most `timeout` (the caller computes it from its Env's clock).
  absl::Status WaitForEngineFor(absl::Duration timeout) const;
  // Calls `fn` once with the engine's final status (OK or the build's error): at once, on this
  // thread, if it is settled, otherwise on the thread that settles it (SetEngine; the builder).
  // `fn` must be quick and must not block: it runs on the builder thread.
  void WhenEngineSettled(std::function<void(const absl::Status&)> fn);
  // Without waiting: OK (built), UNAVAILABLE (building) or the build's error.
  absl::Status EngineStatus() const;
  // The graph's size once built (0, 0 before).
  int64_t num_nodes() const;
  int64_t num_edges() const;

  // PutState, first chunk seen: admits an upload of snapshot `step` and returns the buffer to
  // assemble it in ([P] float32, CPU; contents undefined). FAILED_PRECONDITION if the job is
  // closed, its engine could not be built, or `step` is not after the newest held snapshot;
  // RESOURCE_EXHAUSTED if one more snapshot would exceed the job's reservation. After OK the
  // caller calls exactly one of CommitUpload / AbortUpload, with that buffer.
  absl::StatusOr<torch::Tensor> BeginUpload(int64_t step);
  // The upload failed: nothing changes but the released reservation (the buffer is kept for
  // the next upload).
  void AbortUpload(torch::Tensor buffer);
  // Adds the complete snapshot `state` (the buffer of BeginUpload) as the newest one and drops
  // the oldest beyond ctx; returns the number held. FAILED_PRECONDITION (nothing added) if the
  // job was closed or a snapshot at `step` or later was committed meanwhile.
  absl::StatusOr<int> CommitUpload(int64_t step, torch::Tensor state, int64_t bytes_received);

  // The held snapshots as the context of the NiNo step `step`.
  struct Context {
    torch::Tensor states;   // [ctx, P] float32, oldest first
    uint64_t last_seq = 0;  // identifies the newest snapshot used
  };
  // FAILED_PRECONDITION unless exactly ctx snapshots are held, all at steps in
  // (step - period, step].
  absl::StatusOr<Context> TakeContext(int64_t step) const;
  // The same context without the copy: references to the held snapshots ([P] float32 each,
  // oldest first; a committed snapshot is never written again, and a referenced buffer is
  // not recycled), for a nowcast that stacks them later, on a worker.
  struct PinnedContext {
    std::vector<torch::Tensor> states;
    uint64_t last_seq = 0;
    torch::Tensor Stack() const { return torch::stack(states); }  // [ctx, P]
  };
  absl::StatusOr<PinnedContext> PinContext(int64_t step) const;
  // One NiNo step on `states` ([ctx, P]) with horizon k: predicted [P] float32. One nowcast at a
  // time per job (the engine is thread-compatible); a c10::Error becomes INTERNAL;
  // FAILED_PRECONDITION while the engine is not built.
  absl::StatusOr<torch::Tensor> Nowcast(const torch::Tensor& states, int k) const;
  // The prediction from `Context` reached the client: drops the snapshots it used (as the
  // official optimizer clears its history) and counts it.
  void FinishPrediction(uint64_t last_seq, int64_t bytes_out);

  // Frees the held snapshots and returns their reservation; later uploads fail, and the close
  // listeners are called (on this thread). Idempotent.
  void Close();
  bool closed() const;
  // Calls `fn` once when the job is closed, unless removed first; at once (on this thread,
  // returning 0) if it is closed already. `fn` must be quick and must not block. A listener may
  // still run (once) after RemoveCloseListener if Close() had taken it already.
  using ListenerId = uint64_t;
  ListenerId AddCloseListener(std::function<void()> fn);
  void RemoveCloseListener(ListenerId id);

  v1::JobStatus Status() const;

 private:
  struct Snapshot {
    int64_t step;
    uint64_t seq;
    torch::Tensor values;  // [P] float32
  };
  int64_t HeldBytesLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Keeps `buffer` for a later upload if nothing else refers to it.
  void RecycleLocked(torch::Tensor buffer) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const JobSpec spec_;
  const std::string token_;
  MemoryBudget* const budget_;
  const int64_t reservation_bytes_;  // snapshots
  const int64_t engine_bytes_;

  // Guards the engine's arrival (held briefly: uploads, GetJob and Predict read it while a
  // nowcast runs). The engine is set once and never replaced.
  mutable absl::Mutex engine_mu_;
  mutable absl::Mutex nowcast_mu_;  // serialises Nowcast (the engine is thread-compatible)
  std::unique_ptr<NowcastEngine> engine_ ABSL_GUARDED_BY(engine_mu_);
  absl::Status engine_status_ ABSL_GUARDED_BY(engine_mu_) =
      absl::UnavailableError("the job's NiNo graph is being built");
  int64_t num_nodes_ ABSL_GUARDED_BY(engine_mu_) = 0;
  int64_t num_edges_ ABSL_GUARDED_BY(engine_mu_) = 0;
  std::vector<std::function<void(const absl::Status&)>> engine_listeners_
      ABSL_GUARDED_BY(engine_mu_);

  mutable absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Snapshot> held_ ABSL_GUARDED_BY(mu_);
  std::vector<torch::Tensor> free_buffers_ ABSL_GUARDED_BY(mu_);
  int uploads_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t last_state_step_ ABSL_GUARDED_BY(mu_) = -1;
  int64_t predictions_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t bytes_in_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t bytes_out_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<ListenerId, std::function<void()>> close_listeners_ ABSL_GUARDED_BY(mu_);
  ListenerId next_listener_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_JOB_H_
