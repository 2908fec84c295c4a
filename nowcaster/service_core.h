// What the nowcaster service's calls share: the service's parts they use (ServiceCore) and heap
// trimming after big work. LibTorch calls are guarded with GuardTorch (common/status).
#ifndef NINO_NOWCASTER_SERVICE_CORE_H_
#define NINO_NOWCASTER_SERVICE_CORE_H_

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <grpcpp/grpcpp.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/env/env.h"
#include "common/status/torch_guard.h"
#include "nowcaster/job.h"
#include "nowcaster/metrics.h"
#include "nowcaster/options.h"
#include "nowcaster/work_queue.h"

namespace nino::nowcaster {

// The service's parts a Predict or PutState call uses. Everything pointed to outlives every
// call: the server shuts gRPC down (every call done) before it stops the workers and destroys
// the service.
struct ServiceCore {
  const NowcasterOptions* options = nullptr;
  NowcasterMetrics* metrics = nullptr;
  WorkQueue* queue = nullptr;  // the nowcast workers
  Env* env = nullptr;          // the clock of deadlines and timings
  // The open job `job_id` if `token` is its job token and the call's bearer token belongs to
  // its principal (auth.h codes first, then NOT_FOUND / PERMISSION_DENIED).
  std::function<absl::StatusOr<std::shared_ptr<Job>>(
      const grpc::ServerContextBase& context, absl::string_view job_id, absl::string_view token)>
      find_job;
  // Predict calls accepted and not yet done (NowcasterService::predicts_in_flight).
  std::atomic<int64_t>* predicts_in_flight = nullptr;

  // `deadline` (a gRPC call deadline) as absl::Time; InfiniteFuture for none.
  static absl::Time FromCallDeadline(std::chrono::system_clock::time_point deadline) {
    return deadline == std::chrono::system_clock::time_point::max() ? absl::InfiniteFuture()
                                                                    : absl::FromChrono(deadline);
  }
  // True once the Env's wall clock reached `deadline`.
  bool Expired(absl::Time deadline) const { return env->Now() >= deadline; }
};

// Gives the heap memory freed by a graph build or a nowcast back to the kernel. The process
// keeps up to 1 GiB of free heap per malloc arena (runtime::TuneAllocatorForTensors), and every
// worker and the builder thread have their own arena: without this, the resident memory would
// follow each thread's high-water mark instead of the jobs' reservations. Costs milliseconds,
// once per build (which takes far longer).
inline void ReturnFreedHeap() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

// After a nowcast whose job reserved `engine_bytes`: trims when that is large (>= 64 MiB, where a
// step takes far longer than the trim), and otherwise at most once a second per process. A trim
// makes the next steps fault their temporaries in again, and on a VM a page fault costs ~20x the
// write: trimming after every FM-16 nowcast cut the load test's throughput 3.6x
// (docs/BENCHMARKS.md section 8). Small jobs' freed temporaries (< 64 MiB per worker) may then
// stay resident for up to a second.
inline void ReturnFreedHeapAfterNowcast(int64_t engine_bytes) {
  constexpr int64_t kLargeWorkBytes = int64_t{64} << 20;
  constexpr int64_t kSmallWorkTrimIntervalNs = 1'000'000'000;
  static std::atomic<int64_t> last_trim_ns{0};
  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  int64_t last = last_trim_ns.load(std::memory_order_relaxed);
  if (engine_bytes < kLargeWorkBytes &&
      (now - last < kSmallWorkTrimIntervalNs ||
       !last_trim_ns.compare_exchange_strong(last, now, std::memory_order_relaxed))) {
    return;  // a trim ran within the second (or another thread is starting one now)
  }
  if (engine_bytes >= kLargeWorkBytes) last_trim_ns.store(now, std::memory_order_relaxed);
  ReturnFreedHeap();
}

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_SERVICE_CORE_H_
