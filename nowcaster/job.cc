#include "nowcaster/job.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/runtime/allocator.h"
#include "nowcaster/token.h"

namespace nino::nowcaster {
namespace {

// A [n] float32 CPU tensor in its own huge-page-advised mapping, unmapped when the tensor's
// storage is freed. RESOURCE_EXHAUSTED if the kernel refuses the mapping.
absl::StatusOr<torch::Tensor> NewSnapshotBuffer(int64_t n) {
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  void* p = runtime::MapLargeBuffer(bytes);
  if (p == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot map a snapshot buffer of ", bytes, " bytes"));
  }
  return torch::from_blob(
      p, {n}, [bytes](void* q) { runtime::UnmapLargeBuffer(q, bytes); },
      torch::TensorOptions().dtype(torch::kFloat32));
}

}  // namespace

Job::Job(JobSpec spec, std::string token, MemoryBudget* budget, int64_t snapshot_bytes,
         int64_t engine_bytes)
    : spec_(std::move(spec)),
      token_(std::move(token)),
      budget_(budget),
      reservation_bytes_(snapshot_bytes),
      engine_bytes_(engine_bytes) {}

Job::~Job() {
  Close();
  // The engine dies with the job: a build or nowcast that still used it after Close() kept
  // its memory until now.
  budget_->Release(engine_bytes_);
}

bool Job::TokenMatches(absl::string_view token) const { return TokensEqual(token, token_); }

void Job::SetEngine(absl::StatusOr<std::unique_ptr<NowcastEngine>> engine) {
  std::vector<std::function<void(const absl::Status&)>> listeners;
  absl::Status settled;
  {
    absl::MutexLock lock(&engine_mu_);
    // Settled once: a running Nowcast holds the engine without this lock.
    if (engine_status_.code() != absl::StatusCode::kUnavailable) return;
    if (!engine.ok()) {
      engine_status_ = engine.status();
    } else {
      engine_ = std::move(*engine);
      num_nodes_ = engine_->total_nodes();
      num_edges_ = engine_->total_edges();
      engine_status_ = absl::OkStatus();
    }
    settled = engine_status_;
    listeners.swap(engine_listeners_);
  }
  for (auto& fn : listeners) fn(settled);
}

void Job::WhenEngineSettled(std::function<void(const absl::Status&)> fn) {
  absl::Status settled;
  {
    absl::MutexLock lock(&engine_mu_);
    if (engine_status_.code() == absl::StatusCode::kUnavailable) {
      engine_listeners_.push_back(std::move(fn));
      return;
    }
    settled = engine_status_;
  }
  fn(settled);
}

absl::Status Job::WaitForEngine(absl::Time deadline) const {
  absl::MutexLock lock(&engine_mu_);
  auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_) {
    return engine_status_.code() != absl::StatusCode::kUnavailable;
  };
  if (!engine_mu_.AwaitWithDeadline(absl::Condition(&settled), deadline)) {
    return absl::DeadlineExceededError(absl::StrCat("the NiNo graph of job ", spec_.job_id,
                                                    " was still being built at the deadline"));
  }
  return engine_status_;
}

absl::Status Job::WaitForEngineFor(absl::Duration timeout) const {
  absl::MutexLock lock(&engine_mu_);
  auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(engine_mu_) {
    return engine_status_.code() != absl::StatusCode::kUnavailable;
  };
  if (!engine_mu_.AwaitWithTimeout(absl::Condition(&settled), timeout)) {
    return absl::DeadlineExceededError(absl::StrCat("the NiNo graph of job ", spec_.job_id,
                                                    " was still being built at the deadline"));
  }
  return engine_status_;
}

absl::Status Job::EngineStatus() const {
  absl::MutexLock lock(&engine_mu_);
  return engine_status_;
}

int64_t Job::num_nodes() const {
  absl::MutexLock lock(&engine_mu_);
  return num_nodes_;
}

int64_t Job::num_edges() const {
  absl::MutexLock lock(&engine_mu_);
  return num_edges_;
}

int64_t Job::HeldBytesLocked() const {
  return (static_cast<int64_t>(held_.size()) + uploads_in_flight_) * spec_.state_bytes();
}

void Job::RecycleLocked(torch::Tensor buffer) {
  // Another owner (a context being stacked) keeps it alive: let it go with that owner.
  if (!closed_ && buffer.defined() && buffer.use_count() == 1 &&
      buffer.storage().use_count() == 1) {
    free_buffers_.push_back(std::move(buffer));
  }
}

absl::StatusOr<torch::Tensor> Job::BeginUpload(int64_t step) {
  if (absl::Status engine = EngineStatus();
      !engine.ok() && engine.code() != absl::StatusCode::kUnavailable) {
    return absl::FailedPreconditionError(absl::StrCat("job ", spec_.job_id, " has no NiNo graph (",
                                                      engine.message(), "); close it"));
  }
  {
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
      return absl::ResourceExhaustedError(
          absl::StrCat("job ", spec_.job_id, ": another snapshot of ", spec_.state_bytes(),
                       " bytes would exceed the job's reservation of ", reservation_bytes_,
                       " bytes (", held_.size(), " held, ", uploads_in_flight_,
                       " uploading; upload one snapshot at a time)"));
    }
    ++uploads_in_flight_;
    if (!free_buffers_.empty()) {
      torch::Tensor buffer = std::move(free_buffers_.back());
      free_buffers_.pop_back();
      return buffer;
    }
  }
  // No free buffer: map a new one, outside the lock. The reservation check above counts it;
  // buffers are only created when none is free, so a job never has more than ctx + 1.
  absl::StatusOr<torch::Tensor> buffer = NewSnapshotBuffer(spec_.num_params);
  if (!buffer.ok()) {
    absl::MutexLock lock(&mu_);
    --uploads_in_flight_;
  }
  return buffer;
}

void Job::AbortUpload(torch::Tensor buffer) {
  absl::MutexLock lock(&mu_);
  --uploads_in_flight_;
  RecycleLocked(std::move(buffer));
}

absl::StatusOr<int> Job::CommitUpload(int64_t step, torch::Tensor state, int64_t bytes_received) {
  absl::MutexLock lock(&mu_);
  --uploads_in_flight_;
  if (closed_) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", spec_.job_id, " was closed during the upload"));
  }
  if (!held_.empty() && step <= held_.back().step) {
    RecycleLocked(std::move(state));
    return absl::FailedPreconditionError(absl::StrCat(
        "step ", step, " is not after the newest held snapshot (step ", held_.back().step,
        ") of job ", spec_.job_id, "; it arrived during this upload"));
  }
  held_.push_back({step, next_seq_++, std::move(state)});
  while (static_cast<int64_t>(held_.size()) > spec_.ctx) {
    torch::Tensor dropped = std::move(held_.front().values);
    held_.pop_front();
    RecycleLocked(std::move(dropped));
  }
  last_state_step_ = step;
  bytes_in_ += bytes_received;
  return static_cast<int>(held_.size());
}

absl::StatusOr<Job::PinnedContext> Job::PinContext(int64_t step) const {
  PinnedContext pinned;
  absl::MutexLock lock(&mu_);
  if (static_cast<int64_t>(held_.size()) != spec_.ctx) {
    return absl::FailedPreconditionError(absl::StrCat("job ", spec_.job_id, " holds ", held_.size(),
                                                      " of the ", spec_.ctx,
                                                      " snapshots a NiNo step needs"));
  }
  const int64_t oldest = held_.front().step, newest = held_.back().step;
  if (newest > step || oldest <= step - spec_.period) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the held snapshots (steps ", oldest, "..", newest, ") are not the context of NiNo step ",
        step, " (expected steps in (", step - spec_.period, ", ", step, "])"));
  }
  for (const Snapshot& s : held_) pinned.states.push_back(s.values);
  pinned.last_seq = held_.back().seq;
  return pinned;
}

absl::StatusOr<Job::Context> Job::TakeContext(int64_t step) const {
  absl::StatusOr<PinnedContext> pinned = PinContext(step);
  if (!pinned.ok()) return pinned.status();
  Context context;
  context.states = pinned->Stack();  // outside the lock: copies ctx * P floats
  context.last_seq = pinned->last_seq;
  return context;
}

absl::StatusOr<torch::Tensor> Job::Nowcast(const torch::Tensor& states, int k) const {
  const NowcastEngine* engine = nullptr;
  {
    absl::MutexLock lock(&engine_mu_);
    if (engine_ == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job ", spec_.job_id, " has no NiNo graph yet (", engine_status_.message(), ")"));
    }
    engine = engine_.get();
  }
  absl::MutexLock lock(&nowcast_mu_);
  try {
    return engine->Nowcast(states, k);
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat("nowcast failed in LibTorch: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("nowcast failed: ", e.what()));
  }
}

void Job::FinishPrediction(uint64_t last_seq, int64_t bytes_out) {
  absl::MutexLock lock(&mu_);
  while (!held_.empty() && held_.front().seq <= last_seq) {
    torch::Tensor dropped = std::move(held_.front().values);
    held_.pop_front();
    RecycleLocked(std::move(dropped));
  }
  ++predictions_;
  bytes_out_ += bytes_out;
}

void Job::Close() {
  std::deque<Snapshot> freed;
  std::vector<torch::Tensor> freed_buffers;
  std::map<ListenerId, std::function<void()>> listeners;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    closed_ = true;
    freed.swap(held_);
    freed_buffers.swap(free_buffers_);
    listeners.swap(close_listeners_);
  }
  budget_->Release(reservation_bytes_);
  for (auto& [id, fn] : listeners) fn();
}

bool Job::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

Job::ListenerId Job::AddCloseListener(std::function<void()> fn) {
  {
    absl::MutexLock lock(&mu_);
    if (!closed_) {
      const ListenerId id = next_listener_++;
      close_listeners_.emplace(id, std::move(fn));
      return id;
    }
  }
  fn();
  return 0;
}

void Job::RemoveCloseListener(ListenerId id) {
  if (id == 0) return;
  absl::MutexLock lock(&mu_);
  close_listeners_.erase(id);
}

v1::JobStatus Job::Status() const {
  v1::JobStatus s;
  s.set_job_id(spec_.job_id);
  s.set_nino_model(spec_.nino_model);
  s.set_num_params(spec_.num_params);
  {
    absl::MutexLock lock(&mu_);
    s.set_states_held(static_cast<int32_t>(held_.size()));
    s.set_last_state_step(last_state_step_);
    s.set_predictions(predictions_);
    s.set_bytes_in(bytes_in_);
    s.set_bytes_out(bytes_out_);
    s.set_memory_bytes(HeldBytesLocked());
    s.set_cached_bytes(static_cast<int64_t>(free_buffers_.size()) * spec_.state_bytes());
  }
  const absl::Status engine = EngineStatus();
  s.set_graph_state(engine.ok() ? "ready"
                    : engine.code() == absl::StatusCode::kUnavailable
                        ? "building"
                        : absl::StrCat("failed: ", engine.message()));
  s.set_num_nodes(num_nodes());
  s.set_num_edges(num_edges());
  s.set_engine_bytes(engine_bytes_);
  s.set_reserved_bytes(reservation_bytes_ + engine_bytes_);
  return s;
}

}  // namespace nino::nowcaster
