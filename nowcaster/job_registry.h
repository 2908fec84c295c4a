// The open jobs by id, with token checks.
#ifndef NINO_NOWCASTER_JOB_REGISTRY_H_
#define NINO_NOWCASTER_JOB_REGISTRY_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "nowcaster/job.h"

namespace nino::nowcaster {

// Thread-safe. Jobs are shared: a call that found a job keeps it alive after CloseJob.
class JobRegistry {
 public:
  // ALREADY_EXISTS if an open job has the same id (and `job` is not added).
  absl::Status Add(std::shared_ptr<Job> job);
  bool Contains(absl::string_view job_id) const;
  // NOT_FOUND for an unknown id, PERMISSION_DENIED for a wrong token.
  absl::StatusOr<std::shared_ptr<Job>> Find(absl::string_view job_id,
                                            absl::string_view token) const;
  // Find, then removes the job and closes it (frees its snapshots and reservation).
  absl::Status Remove(absl::string_view job_id, absl::string_view token);
  // Every open job, by id.
  std::vector<std::shared_ptr<Job>> List() const;
  size_t size() const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Job>, std::less<>> jobs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_JOB_REGISTRY_H_
