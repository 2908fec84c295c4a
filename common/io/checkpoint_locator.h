// Finds a NiNo checkpoint file the way users expect:
//   1. an explicit path (--nino_ckpt PATH) if given: it must exist and be readable;
//   2. the per-user cache: $NINO_CACHE_DIR, else $XDG_CACHE_HOME/nino, else $HOME/.cache/nino,
//      file <cache>/<name>; accepted only if its sha256 matches the known checksum (a file with
//      a wrong checksum is reported and ignored, never used);
//   3. a download of the official file into the cache (temporary file, sha256 verified, then
//      published with WriteFileAtomically, so a power loss never leaves a partial cache file; a
//      checksum mismatch deletes the temporary file and fails);
//   4. offline fallback: <shared>/reference/checkpoints/<name> (shared = $NINO_SHARED_DIR or the
//      compiled-in default), also sha256 verified;
//   5. otherwise NOT_FOUND with a message that says exactly how to get the file.
#ifndef NINO_COMMON_IO_CHECKPOINT_LOCATOR_H_
#define NINO_COMMON_IO_CHECKPOINT_LOCATOR_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/env/env.h"

namespace nino::io {

// A known official checkpoint.
struct KnownCheckpoint {
  std::string name;    // file name, e.g. "nino_no_posw.pt"
  std::string url;     // official download URL
  std::string sha256;  // lowercase hex
};

// The three official checkpoints (nino_no_posw.pt, nino_mlp.pt, nino_mlp_h32.pt).
const std::vector<KnownCheckpoint>& OfficialCheckpoints();
// nullptr if `name` is not one of them.
const KnownCheckpoint* FindOfficialCheckpoint(const std::string& name);

// Lowercase hex sha256 of a file's bytes (streamed). NOT_FOUND / INTERNAL on I/O errors.
absl::StatusOr<std::string> Sha256File(const std::string& path);
// Lowercase hex sha256 of bytes.
std::string Sha256Hex(const std::string& bytes);

// Downloads `url` to `dest_path` (overwriting). The default uses libcurl (http, https, file).
using Fetcher = std::function<absl::Status(const std::string& url, const std::string& dest_path)>;
absl::Status CurlFetch(const std::string& url, const std::string& dest_path);

struct LocatorOptions {
  std::string explicit_path;  // --nino_ckpt; empty = not given
  std::string name = "nino_no_posw.pt";
  std::string cache_dir;   // empty = DefaultCacheDir()
  std::string shared_dir;  // empty = DefaultSharedDir()
  bool allow_download = true;
  Fetcher fetcher;  // empty = CurlFetch
  // Overrides for tests (empty = the official entry for `name`).
  std::string url_override;
  std::string sha256_override;
  Env* env = nullptr;  // existence checks and the cache write; nullptr: Env::Default()
};

struct LocatedCheckpoint {
  std::string path;
  std::string source;              // "explicit", "cache", "download", "shared"
  std::vector<std::string> notes;  // what was tried and why it was skipped
};

// $NINO_CACHE_DIR, else $XDG_CACHE_HOME/nino, else $HOME/.cache/nino.
std::string DefaultCacheDir();
// $NINO_SHARED_DIR, else the compiled-in default (../shared next to the source tree).
std::string DefaultSharedDir();

absl::StatusOr<LocatedCheckpoint> LocateCheckpoint(const LocatorOptions& options);

}  // namespace nino::io

#endif  // NINO_COMMON_IO_CHECKPOINT_LOCATOR_H_
