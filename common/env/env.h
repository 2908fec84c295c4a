// Env: the one seam through which the project touches the outside world where durability or
// time matters: files that are written (append, flush, sync, close), rename, directory sync,
// removal, existence, the clock and sleeping. LevelDB's Env is the model.
//
// Contract:
//   * Every method is thread-safe; a WritableFile is used by one thread at a time.
//   * Errors are absl::Status values naming the path and the OS error (errno mapped to a code:
//     NOT_FOUND for a missing file or folder, PERMISSION_DENIED, RESOURCE_EXHAUSTED for a full
//     disk, INTERNAL otherwise). Nothing throws.
//   * Durability is explicit: data appended to a WritableFile survives a power loss only after a
//     successful Sync(); a created, renamed or removed directory entry survives only after a
//     successful SyncDir() of its folder. Flush() only hands the bytes to the OS (a crash of the
//     process keeps them, a power loss may not).
//   * Env::Default() is the POSIX implementation (posix_env.cc); it lives for the whole process
//     and must not be deleted. Tests substitute an EnvWrapper subclass (fault_injection_env.h).
//   * NowMicros() is monotonic (for durations and deadlines); Now() is wall-clock time.
#ifndef NINO_COMMON_ENV_ENV_H_
#define NINO_COMMON_ENV_ENV_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace nino {

// A file open for sequential writing. Destroying it without Close() closes it and drops any
// error; call Close() to learn whether the last bytes reached the OS.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual absl::Status Append(absl::string_view data) = 0;
  virtual absl::Status Flush() = 0;  // buffered bytes to the OS
  virtual absl::Status Sync() = 0;   // Flush, then fsync: the bytes are durable
  virtual absl::Status Close() = 0;  // Flush and close; later calls fail
};

class Env {
 public:
  virtual ~Env() = default;
  // The process-wide POSIX Env.
  static Env* Default();

  // Creates `path` (or truncates it) for writing.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(
      const std::string& path) = 0;
  // Opens `path` for appending, creating it when absent.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(
      const std::string& path) = 0;
  // rename(2): atomically replaces `to`. Both paths must be in the same file system.
  virtual absl::Status RenameFile(const std::string& from, const std::string& to) = 0;
  // fsync of a folder: its entries (creations, renames, removals) become durable.
  virtual absl::Status SyncDir(const std::string& dir) = 0;
  virtual absl::Status RemoveFile(const std::string& path) = 0;
  virtual bool FileExists(const std::string& path) = 0;

  virtual int64_t NowMicros() = 0;  // monotonic
  virtual absl::Time Now() = 0;     // wall clock
  virtual void SleepForMicroseconds(int64_t micros) = 0;
};

// Forwards every call to `target` (not owned); subclasses override what they change.
class EnvWrapper : public Env {
 public:
  explicit EnvWrapper(Env* target) : target_(target) {}
  Env* target() const { return target_; }

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    return target_->NewWritableFile(path);
  }
  absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(
      const std::string& path) override {
    return target_->NewAppendableFile(path);
  }
  absl::Status RenameFile(const std::string& from, const std::string& to) override {
    return target_->RenameFile(from, to);
  }
  absl::Status SyncDir(const std::string& dir) override { return target_->SyncDir(dir); }
  absl::Status RemoveFile(const std::string& path) override { return target_->RemoveFile(path); }
  bool FileExists(const std::string& path) override { return target_->FileExists(path); }
  int64_t NowMicros() override { return target_->NowMicros(); }
  absl::Time Now() override { return target_->Now(); }
  void SleepForMicroseconds(int64_t micros) override { target_->SleepForMicroseconds(micros); }

 private:
  Env* target_;
};

}  // namespace nino

#endif  // NINO_COMMON_ENV_ENV_H_
