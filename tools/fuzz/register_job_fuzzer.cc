// libFuzzer target: RegisterJob's validation, without a server.
//
// Input: a serialised nino.v1.RegisterJobRequest (raw protobuf bytes; libprotobuf-mutator is
// not available here, so libFuzzer mutates the wire bytes). A message protobuf cannot parse is
// ignored (gRPC would reject it before the handler). A parsed request goes through what
// NowcasterService::DoRegisterJob does before it builds anything, for a GNN NiNo model (the
// default NiNoConfig) and an MLP one (gnn = false): ValidateJobRequest, ApplyTuning and
// EstimateJobFootprint (the memory admission estimate).
//
// Oracles beyond the sanitizers: an accepted spec has 1..kMaxNumParams parameters whose
// offsets tile [0, num_params), a non-empty horizon schedule, and a footprint whose parts are
// non-negative and add up without overflow.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "common/nino/nino_model.h"
#include "common/nino/nowcast_engine.h"
#include "nino/v1/nowcaster.pb.h"
#include "nowcaster/job_footprint.h"
#include "nowcaster/job_spec.h"

namespace {

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

void Register(const nino::v1::RegisterJobRequest& request, const nino::NiNoConfig& config) {
  absl::StatusOr<nino::nowcaster::JobSpec> spec =
      nino::nowcaster::ValidateJobRequest(request, "nino_no_posw", config);
  if (!spec.ok()) {
    FUZZ_CHECK(spec.status().code() == absl::StatusCode::kInvalidArgument);
    return;
  }
  FUZZ_CHECK(spec->num_params >= 1 && spec->num_params <= nino::nowcaster::kMaxNumParams);
  int64_t offset = 0;
  for (const nino::ParamSpec& p : spec->params) {
    FUZZ_CHECK(p.offset == offset);
    offset += p.numel;
  }
  FUZZ_CHECK(offset == spec->num_params);
  FUZZ_CHECK(!spec->k_schedule.empty());

  nino::NowcastEngineOptions options;
  options.lpe.sign_seed = spec->lpe_seed;
  if (!nino::ApplyTuning(spec->tuning, config, &options).ok()) return;
  absl::StatusOr<nino::nowcaster::JobFootprint> footprint =
      nino::nowcaster::EstimateJobFootprint(*spec, config, options);
  if (!footprint.ok()) {
    FUZZ_CHECK(footprint.status().code() == absl::StatusCode::kInvalidArgument);
    return;
  }
  const nino::NowcastMemoryEstimate& e = footprint->engine;
  FUZZ_CHECK(footprint->snapshot_bytes > 0);
  FUZZ_CHECK(e.graph_bytes >= 0 && e.build_bytes >= 0 && e.nowcast_bytes >= 0 &&
             e.heap_slack_bytes >= 0);
  FUZZ_CHECK(e.total_nodes() >= 0 && e.total_edges() >= 0);
  FUZZ_CHECK(footprint->total_bytes() >= footprint->snapshot_bytes);
  (void)footprint->Describe();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nino::v1::RegisterJobRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  Register(request, nino::NiNoConfig{});
  nino::NiNoConfig mlp;
  mlp.gnn = false;
  Register(request, mlp);
  return 0;
}
