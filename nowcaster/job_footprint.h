// A job's whole memory footprint in the nowcaster, known at RegisterJob before anything is
// built: what the job's reservation against the memory budget covers.
//
//   snapshot_bytes  (ctx + 1) snapshots of 4 * num_params bytes (ctx held, one being received)
//   engine          the NowcastEngine estimate (common/nino/memory_estimate.h): the graphs,
//                   indices and positional encodings it keeps, plus the larger of the build's
//                   peak (edge lists, eigen-solver) and one nowcast's working memory at the
//                   job's tuning (edge state, chunk temporaries, head output, the stacked context)
//
// Working memory is reserved per job, not per worker: a job's build and its nowcasts never
// overlap each other (Job serialises its nowcasts), so every admitted job can be building or
// nowcasting at the same time as all the others without the process exceeding the budget,
// whatever --workers is. The price is that idle jobs hold room for a nowcast they are not
// running (docs/MEMORY_ADMISSION.md).
#ifndef NINO_NOWCASTER_JOB_FOOTPRINT_H_
#define NINO_NOWCASTER_JOB_FOOTPRINT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/nino/memory_estimate.h"
#include "common/nino/nino_model.h"
#include "common/nino/nowcast_engine.h"
#include "nowcaster/job_spec.h"

namespace nino::nowcaster {

struct JobFootprint {
  int64_t snapshot_bytes = 0;
  NowcastMemoryEstimate engine;

  int64_t engine_bytes() const { return engine.engine_bytes(); }
  int64_t total_bytes() const { return snapshot_bytes + engine_bytes(); }
  // "N bytes (snapshots a, graph b, nowcast working memory c)", for errors and logs.
  std::string Describe() const;
};

// The footprint of a validated job served by a model with `config`, whose engine is built with
// `options`. INVALID_ARGUMENT ("params/graph: no NiNo graph for this layout: ...") where the
// layout's graph cannot be counted.
absl::StatusOr<JobFootprint> EstimateJobFootprint(const JobSpec& spec, const NiNoConfig& config,
                                                  const NowcastEngineOptions& options);

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_JOB_FOOTPRINT_H_
