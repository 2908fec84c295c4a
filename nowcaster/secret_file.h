// Reading the small files that hold secrets and certificates (TLS material, token files).
#ifndef NINO_NOWCASTER_SECRET_FILE_H_
#define NINO_NOWCASTER_SECRET_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace nino::nowcaster {

// The whole file at `path` (at most 1 MiB). INVALID_ARGUMENT naming `flag` and `path` when it
// cannot be read, is empty or is larger. The contents never appear in an error.
absl::StatusOr<std::string> ReadSecretFile(absl::string_view flag, const std::string& path);

// The first line of ReadSecretFile, surrounding whitespace removed: a single bearer token.
// INVALID_ARGUMENT (naming flag and path) when that line is empty or holds whitespace.
absl::StatusOr<std::string> ReadTokenFile(absl::string_view flag, const std::string& path);

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_SECRET_FILE_H_
