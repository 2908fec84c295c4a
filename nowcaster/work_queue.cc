#include "nowcaster/work_queue.h"

#include "absl/strings/str_cat.h"

namespace nino::nowcaster {

WorkQueue::WorkQueue(int workers, int max_pending, std::function<void(int)> on_depth)
    : max_pending_(max_pending), on_depth_(std::move(on_depth)) {
  workers_.reserve(workers);
  for (int i = 0; i < workers; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

WorkQueue::~WorkQueue() { Stop(); }

absl::Status WorkQueue::Submit(Task task) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("the server is shutting down");
  if (static_cast<int>(pending_.size()) >= max_pending_) {
    return absl::ResourceExhaustedError(absl::StrCat("the nowcast queue is full (", pending_.size(),
                                                     " requests wait for ", workers_.size(),
                                                     " workers); retry later"));
  }
  pending_.push_back(std::move(task));
  if (on_depth_) on_depth_(static_cast<int>(pending_.size()));
  return absl::OkStatus();
}

void WorkQueue::WorkerLoop() {
  for (;;) {
    Task task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &WorkQueue::HasWorkOrStopping));
      if (pending_.empty()) return;  // stopping
      task = std::move(pending_.front());
      pending_.pop_front();
      if (on_depth_) on_depth_(static_cast<int>(pending_.size()));
    }
    task(true);
  }
}

void WorkQueue::Stop() {
  absl::MutexLock stop_lock(&stop_mu_);
  std::deque<Task> dropped;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    dropped.swap(pending_);
    if (on_depth_ && !dropped.empty()) on_depth_(0);
  }
  for (Task& task : dropped) task(false);
  for (std::thread& t : workers_) {
    if (t.joinable()) t.join();
  }
}

bool WorkQueue::HasWorkOrStopping() const { return stopping_ || !pending_.empty(); }

int WorkQueue::pending() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(pending_.size());
}

}  // namespace nino::nowcaster
