// WriteFileAtomically: the one way the project replaces a file that must never be seen half
// written (checkpoints, manifests, summaries, caches).
//
// Contract: the contents go to a new temporary file in the folder of `path`
// (".<name>.tmp.<pid>.<n>.<random>"), which is fsynced and closed, then renamed over `path`,
// then the folder is fsynced. So:
//   * readers of `path` see either the old file or the whole new one, never a part;
//   * once OK is returned the new contents survive a power loss;
//   * on an error before the rename, `path` is untouched and the temporary file is removed
//     (best effort) and the error names the step and the file;
//   * on an error of the folder fsync, `path` already holds the whole new file, but a power loss
//     may still bring back the old one; the error says so.
// The folder must exist. All I/O goes through `env`.
#ifndef NINO_COMMON_ENV_WRITE_FILE_ATOMICALLY_H_
#define NINO_COMMON_ENV_WRITE_FILE_ATOMICALLY_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/env/env.h"

namespace nino {

absl::Status WriteFileAtomically(Env* env, const std::string& path, absl::string_view bytes);

// Streaming form for large files: `write` appends the contents to the temporary file (and must
// not Sync or Close it); its error aborts the write like an I/O error.
using FileContentsWriter = std::function<absl::Status(WritableFile& file)>;
absl::Status WriteFileAtomically(Env* env, const std::string& path,
                                 const FileContentsWriter& write);

// The folder part of `path` ("." when it has none).
std::string DirectoryOf(const std::string& path);

}  // namespace nino

#endif  // NINO_COMMON_ENV_WRITE_FILE_ATOMICALLY_H_
