// A fixed pool of worker threads fed by a bounded queue: the nowcast executor.
#ifndef NINO_NOWCASTER_WORK_QUEUE_H_
#define NINO_NOWCASTER_WORK_QUEUE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace nino::nowcaster {

// Thread-safe.
class WorkQueue {
 public:
  // Every submitted task is called exactly once: with run = true on a worker, or with
  // run = false if the queue stops, or the task is cancelled, before a worker takes it (so its
  // waiter can be answered). Tasks must not throw.
  using Task = std::function<void(bool run)>;
  // Names a submitted task for Cancel; never 0.
  using Ticket = uint64_t;

  // `on_depth` (may be empty) is called with the number of waiting tasks whenever it changes,
  // and `on_busy` (may be empty) with the number of workers running a task, both under the
  // queue's lock: keep them cheap (a gauge update).
  WorkQueue(int workers, int max_pending, std::function<void(int)> on_depth = {},
            std::function<void(int)> on_busy = {});
  ~WorkQueue();  // Stop()
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Queues `task`. RESOURCE_EXHAUSTED if max_pending tasks already wait; UNAVAILABLE after Stop.
  absl::Status Submit(Task task);
  // Same, and returns the task's ticket.
  absl::StatusOr<Ticket> SubmitWithTicket(Task task);
  // Takes the task out of the queue if it still waits there and calls it with run = false (on
  // this thread, outside the lock); true if it did. False (nothing happens) once a worker took
  // it, after Stop, or for an unknown ticket.
  bool Cancel(Ticket ticket);

  // Refuses new tasks, calls the waiting ones with run = false, waits for the running ones and
  // joins the workers. Idempotent.
  void Stop();

  // Tasks waiting for a worker; workers running a task.
  int pending() const;
  int busy() const;

 private:
  void WorkerLoop();
  bool HasWorkOrStopping() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetBusyLocked(int busy) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int max_pending_;
  const std::function<void(int)> on_depth_;
  const std::function<void(int)> on_busy_;
  mutable absl::Mutex mu_;
  std::deque<std::pair<Ticket, Task>> pending_ ABSL_GUARDED_BY(mu_);
  Ticket next_ticket_ ABSL_GUARDED_BY(mu_) = 1;
  int busy_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
  absl::Mutex stop_mu_;  // serialises Stop()
};

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_WORK_QUEUE_H_
