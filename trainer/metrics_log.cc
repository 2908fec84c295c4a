#include "trainer/metrics_log.h"

#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/env/write_file_atomically.h"

namespace nino::trainer {
namespace {

std::string Line(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

// The lines of an earlier run whose "step" is <= keep_through_step.
std::vector<std::string> KeptLines(const std::string& path, int64_t keep_through_step) {
  std::vector<std::string> keep;
  if (keep_through_step < 0) return keep;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) continue;
    if (j["step"].get<int64_t>() <= keep_through_step) keep.push_back(line);
  }
  return keep;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsLog>> MetricsLog::Open(Env* env, const std::string& path,
                                                             int64_t keep_through_step) {
  const std::vector<std::string> keep = KeptLines(path, keep_through_step);
  auto file = env->NewWritableFile(path);
  if (!file.ok()) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot write ", path, ": ", file.status().message()));
  }
  std::unique_ptr<MetricsLog> log(new MetricsLog(path, std::move(*file)));
  std::string kept;
  for (const auto& l : keep) absl::StrAppend(&kept, l, "\n");
  absl::Status s = log->out_->Append(kept);
  if (s.ok()) s = log->out_->Flush();
  if (!s.ok())
    return absl::UnavailableError(absl::StrCat("writing ", path, " failed: ", s.message()));
  return log;
}

absl::StatusOr<std::unique_ptr<MetricsLog>> MetricsLog::Open(const std::string& path,
                                                             int64_t keep_through_step) {
  return Open(Env::Default(), path, keep_through_step);
}

absl::Status MetricsLog::Append(const nlohmann::json& line) {
  absl::Status s = out_->Append(Line(line));
  if (s.ok()) s = out_->Flush();
  if (!s.ok())
    return absl::UnavailableError(absl::StrCat("writing ", path_, " failed: ", s.message()));
  return absl::OkStatus();
}

absl::Status MetricsLog::Sync() {
  absl::Status s = out_->Sync();
  if (!s.ok())
    return absl::UnavailableError(absl::StrCat("syncing ", path_, " failed: ", s.message()));
  return absl::OkStatus();
}

absl::Status WriteJsonFile(Env* env, const std::string& path, const nlohmann::json& value) {
  absl::Status s = WriteFileAtomically(env, path, Line(value));
  if (!s.ok())
    return absl::UnavailableError(absl::StrCat("writing ", path, " failed: ", s.message()));
  return absl::OkStatus();
}

absl::Status WriteJsonFile(const std::string& path, const nlohmann::json& value) {
  return WriteJsonFile(Env::Default(), path, value);
}

}  // namespace nino::trainer
