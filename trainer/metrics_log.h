// The run folder's JSON outputs: `metrics.jsonl` (one JSON object per line: evaluations, log
// lines, NiNo steps) and `summary.json`, written with nlohmann/json so every line is valid JSON
// whatever the strings hold (error messages with quotes, newlines, ...).
#ifndef NINO_TRAINER_METRICS_LOG_H_
#define NINO_TRAINER_METRICS_LOG_H_

#include <cstdint>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace nino::trainer {

class MetricsLog {
 public:
  // Opens `path` for writing. Lines of an earlier run whose "step" is <= keep_through_step are
  // kept (a resumed run rewrites what follows); lines that are not JSON objects with an integer
  // "step" are dropped. keep_through_step < 0: start empty. PERMISSION_DENIED naming the path
  // when it cannot be written.
  static absl::StatusOr<std::unique_ptr<MetricsLog>> Open(const std::string& path,
                                                          int64_t keep_through_step);

  // Appends one line and flushes it. UNAVAILABLE when the write fails (disk full, ...).
  absl::Status Append(const nlohmann::json& line);

 private:
  explicit MetricsLog(std::string path) : path_(std::move(path)) {}
  std::string path_;
  std::ofstream out_;
};

// Writes `value` (pretty-printed on one line) to `path`, replacing it atomically.
absl::Status WriteJsonFile(const std::string& path, const nlohmann::json& value);

}  // namespace nino::trainer

#endif  // NINO_TRAINER_METRICS_LOG_H_
