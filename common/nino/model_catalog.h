// Which NiNo model a name or a path means, for every binary that runs or serves NiNo
// (nino_nowcaster, nino_train, nino_nowcast, the demos):
//   "", "default" or kDefaultModelName  -> the project's own model embedded in the binary
//                                          (default_model.h), source "embedded";
//   an official name: "nino_no_posw", "nino_mlp", "nino_mlp_h32" (".pt" optional)
//                                       -> io::LocateCheckpoint: cache, a download when allowed,
//                                          ../shared; sha256 verified;
//   anything else                       -> a torch.save file path, which must exist.
// Nothing here touches the network unless an official name is asked for and allow_download.
#ifndef NINO_COMMON_NINO_MODEL_CATALOG_H_
#define NINO_COMMON_NINO_MODEL_CATALOG_H_

#include <string>

#include "absl/status/statusor.h"
#include "common/nino/nino_model.h"

namespace nino {

struct ResolvedModel {
  std::string name;    // what the model is served and logged as (a path's file stem)
  std::string source;  // "embedded", "explicit", "cache", "download" or "shared"
  std::string path;    // the file; empty for the embedded model
};

// True for "", "default" and kDefaultModelName.
bool IsDefaultModelName(const std::string& name_or_path);

// Finds the model; NOT_FOUND with what was tried (and how to get an official file) otherwise.
absl::StatusOr<ResolvedModel> ResolveModel(const std::string& name_or_path, bool allow_download);

// Loads what ResolveModel found (strict checkpoint checks, see NiNoModel::Load).
absl::StatusOr<NiNoModel> LoadModel(const ResolvedModel& resolved);

}  // namespace nino

#endif  // NINO_COMMON_NINO_MODEL_CATALOG_H_
