// A fixed pool of worker threads fed by a bounded queue: the nowcast executor.
#ifndef NINO_NOWCASTER_WORK_QUEUE_H_
#define NINO_NOWCASTER_WORK_QUEUE_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace nino::nowcaster {

// Thread-safe.
class WorkQueue {
 public:
  // Every submitted task is called exactly once: with run = true on a worker, or with
  // run = false if the queue stops before a worker takes it (so its waiter can be answered).
  // Tasks must not throw.
  using Task = std::function<void(bool run)>;

  // `on_depth` (may be empty) is called with the number of waiting tasks whenever it changes,
  // under the queue's lock: keep it cheap (a gauge update).
  WorkQueue(int workers, int max_pending, std::function<void(int)> on_depth = {});
  ~WorkQueue();  // Stop()
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Queues `task`. RESOURCE_EXHAUSTED if max_pending tasks already wait; UNAVAILABLE after Stop.
  absl::Status Submit(Task task);

  // Refuses new tasks, calls the waiting ones with run = false, waits for the running ones and
  // joins the workers. Idempotent.
  void Stop();

  int pending() const;

 private:
  void WorkerLoop();
  bool HasWorkOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int max_pending_;
  const std::function<void(int)> on_depth_;
  mutable absl::Mutex mu_;
  std::deque<Task> pending_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
  absl::Mutex stop_mu_;  // serialises Stop()
};

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_WORK_QUEUE_H_
