// The nowcaster's Prometheus metrics (prometheus-cpp). NowcasterServer serves them on
// /metrics (MetricsHttpServer) when a metrics port is set.
#ifndef NINO_NOWCASTER_METRICS_H_
#define NINO_NOWCASTER_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace nino::nowcaster {

// Thread-safe (prometheus-cpp metrics are atomic; label lookups lock their family).
class NowcasterMetrics {
 public:
  NowcasterMetrics();

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  void SetJobs(int64_t jobs) { jobs_.Set(static_cast<double>(jobs)); }
  void SetQueueDepth(int depth) { queue_depth_.Set(depth); }
  // Nowcast workers (of --workers) now running a job's work; the rest are idle.
  void SetBusyWorkers(int busy) { busy_workers_.Set(busy); }
  // Predict calls accepted and not yet answered (waiting for a graph, a worker or their
  // nowcast, or streaming the prediction). They hold no thread while they wait.
  void ChangePredictsInFlight(int delta) { predicts_in_flight_.Increment(delta); }
  // Everything open jobs reserved from the memory budget (snapshots and engines).
  void SetReservedBytes(int64_t bytes) { reserved_bytes_.Set(static_cast<double>(bytes)); }
  // The part of it reserved for NiNo graphs and working memory.
  void SetEngineReservedBytes(int64_t bytes) {
    engine_reserved_bytes_.Set(static_cast<double>(bytes));
  }
  void ObserveNowcastSeconds(double seconds) { nowcast_seconds_.Observe(seconds); }
  void AddBytesIn(int64_t bytes) { bytes_in_.Increment(static_cast<double>(bytes)); }
  void AddBytesOut(int64_t bytes) { bytes_out_.Increment(static_cast<double>(bytes)); }
  // One finished RPC: requests_total{method, code}, and errors_total{code} unless OK.
  void CountRequest(absl::string_view method, absl::StatusCode code);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Gauge& jobs_;
  prometheus::Gauge& queue_depth_;
  prometheus::Gauge& busy_workers_;
  prometheus::Gauge& predicts_in_flight_;
  prometheus::Gauge& reserved_bytes_;
  prometheus::Gauge& engine_reserved_bytes_;
  prometheus::Histogram& nowcast_seconds_;
  prometheus::Counter& bytes_in_;
  prometheus::Counter& bytes_out_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& errors_;
};

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_METRICS_H_
