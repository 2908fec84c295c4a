#include "trainer/metrics_log.h"

#include <cstdio>
#include <vector>

#include "absl/strings/str_cat.h"

namespace nino::trainer {

absl::StatusOr<std::unique_ptr<MetricsLog>> MetricsLog::Open(const std::string& path,
                                                             int64_t keep_through_step) {
  std::vector<std::string> keep;
  if (keep_through_step >= 0) {
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) continue;
      if (j["step"].get<int64_t>() <= keep_through_step) keep.push_back(line);
    }
  }
  std::unique_ptr<MetricsLog> log(new MetricsLog(path));
  log->out_.open(path, std::ios::trunc);
  if (!log->out_) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
  for (const auto& l : keep) log->out_ << l << "\n";
  log->out_.flush();
  return log;
}

absl::Status MetricsLog::Append(const nlohmann::json& line) {
  out_ << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  out_.flush();
  if (!out_) return absl::UnavailableError(absl::StrCat("writing ", path_, " failed"));
  return absl::OkStatus();
}

absl::Status WriteJsonFile(const std::string& path, const nlohmann::json& value) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    out.flush();
    if (!out) return absl::UnavailableError(absl::StrCat("writing ", tmp, " failed"));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("renaming ", tmp, " to ", path, " failed"));
  }
  return absl::OkStatus();
}

}  // namespace nino::trainer
