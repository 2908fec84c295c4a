#include "common/nino/default_model.h"

#include "absl/strings/str_cat.h"
#include "common/io/checkpoint_locator.h"
#include "common/io/torch_file.h"

extern "C" {
extern const unsigned char nino_default_model_data[];
extern const unsigned long nino_default_model_size;
}

namespace nino {

absl::string_view DefaultModelBytes() {
  return absl::string_view(reinterpret_cast<const char*>(nino_default_model_data),
                           nino_default_model_size);
}

const std::string& DefaultModelSha256() {
  static const std::string* sha = new std::string(io::Sha256Hex(std::string(DefaultModelBytes())));
  return *sha;
}

absl::StatusOr<NiNoModel> LoadDefaultModel() {
  const std::string source = absl::StrCat("embedded ", kDefaultModelFile);
  absl::StatusOr<io::PickleValue> file =
      io::LoadTorchBytes(std::string(DefaultModelBytes()), source);
  if (!file.ok()) return file.status();
  return NiNoModel::FromTorchValue(*file, source);
}

}  // namespace nino
