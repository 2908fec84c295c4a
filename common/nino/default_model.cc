#include "common/nino/default_model.h"

#include "absl/strings/str_cat.h"
#include "common/io/checkpoint_locator.h"
#include "common/io/torch_file.h"

// Weak: a binary that links //common/nino:model_catalog without a provider of the bytes
// (//models:default_model_bytes through :default_model) still links, and has no default model.
extern "C" {
extern const unsigned char nino_default_model_data[] __attribute__((weak));
extern const unsigned long nino_default_model_size __attribute__((weak));
}

namespace nino {

absl::string_view DefaultModelBytes() {
  if (&nino_default_model_size == nullptr) return {};
  return absl::string_view(reinterpret_cast<const char*>(nino_default_model_data),
                           nino_default_model_size);
}

const std::string& DefaultModelSha256() {
  static const std::string* sha = new std::string(io::Sha256Hex(std::string(DefaultModelBytes())));
  return *sha;
}

absl::StatusOr<NiNoModel> LoadDefaultModel() {
  const std::string source = absl::StrCat("embedded ", kDefaultModelFile);
  if (DefaultModelBytes().empty()) {
    return absl::NotFoundError(absl::StrCat(
        "this binary was built without the default model ", kDefaultModelName,
        " (link //common/nino:default_model); name a model file or an official model"));
  }
  absl::StatusOr<io::PickleValue> file =
      io::LoadTorchBytes(std::string(DefaultModelBytes()), source);
  if (!file.ok()) return file.status();
  return NiNoModel::FromTorchValue(*file, source);
}

}  // namespace nino
