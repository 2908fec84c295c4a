// The run folder's JSON outputs: `metrics.jsonl` (one JSON object per line: evaluations, log
// lines, NiNo steps) and `summary.json`, written with nlohmann/json so every line is valid JSON
// whatever the strings hold (error messages with quotes, newlines, ...). All writes go through an
// Env (common/env/env.h); the overloads without one use Env::Default().
#ifndef NINO_TRAINER_METRICS_LOG_H_
#define NINO_TRAINER_METRICS_LOG_H_

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/env/env.h"

namespace nino::trainer {

class MetricsLog {
 public:
  // Opens `path` for writing. Lines of an earlier run whose "step" is <= keep_through_step are
  // kept (a resumed run rewrites what follows); lines that are not JSON objects with an integer
  // "step" are dropped. keep_through_step < 0: start empty. PERMISSION_DENIED naming the path
  // when it cannot be written.
  static absl::StatusOr<std::unique_ptr<MetricsLog>> Open(Env* env, const std::string& path,
                                                          int64_t keep_through_step);
  static absl::StatusOr<std::unique_ptr<MetricsLog>> Open(const std::string& path,
                                                          int64_t keep_through_step);

  // Appends one line and flushes it to the OS (a crashed process keeps it). UNAVAILABLE when the
  // write fails (disk full, ...).
  absl::Status Append(const nlohmann::json& line);
  // Makes the lines appended so far durable (fsync): call it before the checkpoint they lead to.
  absl::Status Sync();

 private:
  MetricsLog(std::string path, std::unique_ptr<WritableFile> out)
      : path_(std::move(path)), out_(std::move(out)) {}
  std::string path_;
  std::unique_ptr<WritableFile> out_;
};

// Writes `value` (on one line) to `path` with WriteFileAtomically: readers see the old or the
// new file, and the new one is durable once OK is returned. UNAVAILABLE naming the file.
absl::Status WriteJsonFile(Env* env, const std::string& path, const nlohmann::json& value);
absl::Status WriteJsonFile(const std::string& path, const nlohmann::json& value);

}  // namespace nino::trainer

#endif  // NINO_TRAINER_METRICS_LOG_H_
