// The project's own NiNo model, compiled into every binary that links //common/nino:default_model,
// so that NiNo works without a download and without ../shared.
//
// The file is models/<kDefaultModelFile> in the source tree (models/model_card.md says how it
// was meta-trained, on what, and how well it does); its bytes are embedded at build time by
// cc_embedded_file (tools/build_defs/embed.bzl) and decoded on demand by the same torch.save
// reader as any checkpoint, so the embedded model and the file on disk are the same model.
#ifndef NINO_COMMON_NINO_DEFAULT_MODEL_H_
#define NINO_COMMON_NINO_DEFAULT_MODEL_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/nino/nino_model.h"

namespace nino {

// The name under which the default model is served and selected ("--nino_model=<name>").
inline constexpr char kDefaultModelName[] = "nino_wnn_fm16";
// Its file in models/.
inline constexpr char kDefaultModelFile[] = "nino_wnn_fm16.pt";

// The embedded torch.save bytes; empty in a binary linked without them (see BUILD).
absl::string_view DefaultModelBytes();
// Lowercase hex sha256 of DefaultModelBytes() (computed once).
const std::string& DefaultModelSha256();
// Decodes the embedded bytes (a fresh NiNoModel on CPU each call); NOT_FOUND without them.
absl::StatusOr<NiNoModel> LoadDefaultModel();

}  // namespace nino

#endif  // NINO_COMMON_NINO_DEFAULT_MODEL_H_
