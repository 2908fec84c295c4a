// The byte budget shared by all jobs: each job reserves its whole footprint (snapshots, NiNo
// graph, working memory; job_footprint.h) at registration and returns it when closed.
#ifndef NINO_NOWCASTER_MEMORY_BUDGET_H_
#define NINO_NOWCASTER_MEMORY_BUDGET_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace nino::nowcaster {

// Thread-safe.
class MemoryBudget {
 public:
  explicit MemoryBudget(int64_t limit_bytes) : limit_bytes_(limit_bytes) {}

  // Takes `bytes` from the budget, or RESOURCE_EXHAUSTED ("<what> needs N bytes of the memory
  // budget; A of L bytes are available") and takes nothing.
  absl::Status Reserve(int64_t bytes, absl::string_view what);
  // Returns bytes taken by Reserve.
  void Release(int64_t bytes);

  int64_t limit_bytes() const { return limit_bytes_; }
  int64_t reserved_bytes() const;

 private:
  const int64_t limit_bytes_;
  mutable absl::Mutex mu_;
  int64_t reserved_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_MEMORY_BUDGET_H_
