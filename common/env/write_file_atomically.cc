#include "common/env/write_file_atomically.h"

#include <unistd.h>

#include <atomic>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace nino {
namespace {

std::string BaseName(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string TempPathFor(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  static thread_local std::mt19937_64 rng(std::random_device{}());
  return absl::StrFormat("%s/.%s.tmp.%d.%d.%08x", DirectoryOf(path), BaseName(path), ::getpid(),
                         counter++, static_cast<uint32_t>(rng()));
}

// Writes, syncs and closes the temporary file; removes it on any error.
absl::Status WriteTemp(Env* env, const std::string& tmp, const FileContentsWriter& write) {
  auto file = env->NewWritableFile(tmp);
  if (!file.ok()) return file.status();
  absl::Status s = write(**file);
  if (s.ok()) s = (*file)->Sync();
  const absl::Status closed = (*file)->Close();
  if (s.ok()) s = closed;
  if (!s.ok()) (void)env->RemoveFile(tmp);
  return s;
}

}  // namespace

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

absl::Status WriteFileAtomically(Env* env, const std::string& path,
                                 const FileContentsWriter& write) {
  const std::string tmp = TempPathFor(path);
  if (absl::Status s = WriteTemp(env, tmp, write); !s.ok()) return s;
  if (absl::Status s = env->RenameFile(tmp, path); !s.ok()) {
    (void)env->RemoveFile(tmp);
    return s;
  }
  if (absl::Status s = env->SyncDir(DirectoryOf(path)); !s.ok()) {
    return absl::Status(
        s.code(), absl::StrCat(path, " was replaced, but a power loss may undo it: ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(Env* env, const std::string& path, absl::string_view bytes) {
  return WriteFileAtomically(env, path, [bytes](WritableFile& f) { return f.Append(bytes); });
}

}  // namespace nino
