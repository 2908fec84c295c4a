#include "common/nino/model_catalog.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/io/checkpoint_locator.h"
#include "common/nino/default_model.h"

namespace nino {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<ResolvedModel> ResolveOfficial(const std::string& file_name, bool allow_download) {
  io::LocatorOptions lo;
  lo.name = file_name;
  lo.allow_download = allow_download;
  absl::StatusOr<io::LocatedCheckpoint> located = io::LocateCheckpoint(lo);
  if (!located.ok()) return located.status();
  return ResolvedModel{std::string(absl::StripSuffix(file_name, ".pt")), located->source,
                       located->path};
}

absl::StatusOr<ResolvedModel> ResolvePath(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    return absl::NotFoundError(absl::StrCat(
        "NiNo model '", path, "': no such file, and not a known model name (\"default\" = ",
        kDefaultModelName, " built in; official: nino_no_posw, nino_mlp, nino_mlp_h32)"));
  }
  return ResolvedModel{fs::path(path).stem().string(), "explicit", path};
}

}  // namespace

bool IsDefaultModelName(const std::string& name_or_path) {
  return name_or_path.empty() || name_or_path == "default" || name_or_path == kDefaultModelName ||
         name_or_path == kDefaultModelFile;
}

absl::StatusOr<ResolvedModel> ResolveModel(const std::string& name_or_path, bool allow_download) {
  if (IsDefaultModelName(name_or_path)) {
    return ResolvedModel{kDefaultModelName, "embedded", ""};
  }
  const std::string file_name =
      absl::EndsWith(name_or_path, ".pt") ? name_or_path : absl::StrCat(name_or_path, ".pt");
  if (io::FindOfficialCheckpoint(file_name) != nullptr) {
    return ResolveOfficial(file_name, allow_download);
  }
  return ResolvePath(name_or_path);
}

absl::StatusOr<NiNoModel> LoadModel(const ResolvedModel& resolved) {
  if (resolved.source == "embedded") return LoadDefaultModel();
  return NiNoModel::Load(resolved.path);
}

}  // namespace nino
