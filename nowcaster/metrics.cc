#include "nowcaster/metrics.h"

#include <string>

namespace nino::nowcaster {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

// A freshly made registry; the members below are references into it, so it is built first.
std::shared_ptr<prometheus::Registry> NewRegistry() {
  return std::make_shared<prometheus::Registry>();
}

}  // namespace

NowcasterMetrics::NowcasterMetrics()
    : registry_(NewRegistry()),
      jobs_(
          BuildGauge().Name("nino_nowcaster_jobs").Help("Open jobs").Register(*registry_).Add({})),
      queue_depth_(BuildGauge()
                       .Name("nino_nowcaster_queue_depth")
                       .Help("Predict requests waiting for a worker")
                       .Register(*registry_)
                       .Add({})),
      busy_workers_(BuildGauge()
                        .Name("nino_nowcaster_busy_workers")
                        .Help("Nowcast workers now running a job's work (of --workers)")
                        .Register(*registry_)
                        .Add({})),
      predicts_in_flight_(BuildGauge()
                              .Name("nino_nowcaster_predicts_in_flight")
                              .Help("Predict calls accepted and not yet answered")
                              .Register(*registry_)
                              .Add({})),
      reserved_bytes_(BuildGauge()
                          .Name("nino_nowcaster_state_memory_reserved_bytes")
                          .Help("Memory budget reserved by open jobs (snapshots and engines)")
                          .Register(*registry_)
                          .Add({})),
      engine_reserved_bytes_(BuildGauge()
                                 .Name("nino_nowcaster_engine_memory_reserved_bytes")
                                 .Help("Memory budget reserved by open jobs for NiNo graphs, "
                                       "indices and nowcast working memory")
                                 .Register(*registry_)
                                 .Add({})),
      nowcast_seconds_(
          BuildHistogram()
              .Name("nino_nowcaster_nowcast_seconds")
              .Help("Time of one NiNo step on a worker")
              .Register(*registry_)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                               0.5, 1, 2.5, 5, 10, 30, 60, 120})),
      bytes_in_(BuildCounter()
                    .Name("nino_nowcaster_received_bytes_total")
                    .Help("Snapshot payload bytes received in PutState chunks")
                    .Register(*registry_)
                    .Add({})),
      bytes_out_(BuildCounter()
                     .Name("nino_nowcaster_sent_bytes_total")
                     .Help("Prediction payload bytes sent in Predict chunks")
                     .Register(*registry_)
                     .Add({})),
      requests_(BuildCounter()
                    .Name("nino_nowcaster_requests_total")
                    .Help("Finished RPCs by method and status code")
                    .Register(*registry_)),
      errors_(BuildCounter()
                  .Name("nino_nowcaster_errors_total")
                  .Help("Failed RPCs by status code")
                  .Register(*registry_)) {}

void NowcasterMetrics::CountRequest(absl::string_view method, absl::StatusCode code) {
  const std::string code_name = absl::StatusCodeToString(code);
  requests_.Add({{"method", std::string(method)}, {"code", code_name}}).Increment();
  if (code != absl::StatusCode::kOk) errors_.Add({{"code", code_name}}).Increment();
}

}  // namespace nino::nowcaster
