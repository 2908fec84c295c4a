#include "nowcaster/job_footprint.h"

#include "absl/strings/str_cat.h"

namespace nino::nowcaster {

std::string JobFootprint::Describe() const {
  return absl::StrCat(total_bytes(), " bytes (snapshots ", snapshot_bytes, ", graph ",
                      engine.graph_bytes, ", build/nowcast working memory ",
                      engine.engine_bytes() - engine.graph_bytes, ")");
}

absl::StatusOr<JobFootprint> EstimateJobFootprint(const JobSpec& spec, const NiNoConfig& config,
                                                  const NowcastEngineOptions& options) {
  absl::StatusOr<NowcastMemoryEstimate> engine =
      EstimateNowcastMemory(spec.params, spec.graph, config, options);
  if (!engine.ok()) {
    // The estimator's code (INVALID_ARGUMENT for a layout it cannot map), not a remapped one.
    return absl::Status(
        engine.status().code(),
        absl::StrCat("params/graph: no NiNo graph for this layout: ", engine.status().message()));
  }
  JobFootprint f;
  f.snapshot_bytes = (spec.ctx + 1) * spec.state_bytes();
  f.engine = std::move(*engine);
  return f;
}

}  // namespace nino::nowcaster
