#include "nowcaster/work_queue.h"

#include "absl/strings/str_cat.h"

namespace nino::nowcaster {

WorkQueue::WorkQueue(int workers, int max_pending, std::function<void(int)> on_depth,
                     std::function<void(int)> on_busy)
    : max_pending_(max_pending), on_depth_(std::move(on_depth)), on_busy_(std::move(on_busy)) {
  workers_.reserve(workers);
  for (int i = 0; i < workers; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

WorkQueue::~WorkQueue() { Stop(); }

absl::Status WorkQueue::Submit(Task task) { return SubmitWithTicket(std::move(task)).status(); }

absl::StatusOr<WorkQueue::Ticket> WorkQueue::SubmitWithTicket(Task task) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("the server is shutting down");
  if (static_cast<int>(pending_.size()) >= max_pending_) {
    return absl::ResourceExhaustedError(absl::StrCat("the nowcast queue is full (", pending_.size(),
                                                     " requests wait for ", workers_.size(),
                                                     " workers); retry later"));
  }
  const Ticket ticket = next_ticket_++;
  pending_.emplace_back(ticket, std::move(task));
  if (on_depth_) on_depth_(static_cast<int>(pending_.size()));
  return ticket;
}

bool WorkQueue::Cancel(Ticket ticket) {
  Task task;
  {
    absl::MutexLock lock(&mu_);
    auto it = pending_.begin();
    while (it != pending_.end() && it->first != ticket) ++it;
    if (it == pending_.end()) return false;
    task = std::move(it->second);
    pending_.erase(it);
    if (on_depth_) on_depth_(static_cast<int>(pending_.size()));
  }
  task(false);
  return true;
}

void WorkQueue::WorkerLoop() {
  for (;;) {
    Task task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &WorkQueue::HasWorkOrStopping));
      if (pending_.empty()) return;  // stopping
      task = std::move(pending_.front().second);
      pending_.pop_front();
      if (on_depth_) on_depth_(static_cast<int>(pending_.size()));
      SetBusyLocked(busy_ + 1);
    }
    task(true);
    absl::MutexLock lock(&mu_);
    SetBusyLocked(busy_ - 1);
  }
}

void WorkQueue::SetBusyLocked(int busy) {
  busy_ = busy;
  if (on_busy_) on_busy_(busy_);
}

void WorkQueue::Stop() {
  absl::MutexLock stop_lock(&stop_mu_);
  std::deque<std::pair<Ticket, Task>> dropped;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    dropped.swap(pending_);
    if (on_depth_ && !dropped.empty()) on_depth_(0);
  }
  for (auto& [ticket, task] : dropped) task(false);
  for (std::thread& t : workers_) {
    if (t.joinable()) t.join();
  }
}

bool WorkQueue::HasWorkOrStopping() const { return stopping_ || !pending_.empty(); }

int WorkQueue::pending() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(pending_.size());
}

int WorkQueue::busy() const {
  absl::MutexLock lock(&mu_);
  return busy_;
}

}  // namespace nino::nowcaster
