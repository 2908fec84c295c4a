// FaultInjectionEnv: an Env for tests that fails chosen I/O calls and simulates a power loss.
// LevelDB's FaultInjectionTestEnv is the model.
//
// Faults: FailNth(op, n, path_contains) makes the n-th call (1-based, counted from the FailNth
// call) of `op` whose path contains `path_contains` fail with an INTERNAL "injected fault"
// error. A failed open or rename changes nothing; a failed write first writes the first half of
// its bytes (a torn write); a failed Sync or SyncDir makes nothing durable. Each fault fires
// once; one fault per op is pending at a time (a new FailNth for the op replaces it).
//
// Power loss: the env tracks what it would keep after one. A file's data is durable up to its
// last successful Sync() (a file created and never synced is empty); a creation, rename or
// removal is durable once its folder has been SyncDir()ed. DropUnsyncedData() rewrites the
// disk to that state: unsynced appends are cut, entries created since the folder's last sync
// disappear, renamed and removed files come back. Files that this env never touched count as
// durable. Folders are not modelled (created folders always survive). Close (destroy) every
// file opened through the env before DropUnsyncedData(); after it, the disk counts as durable.
// A file must not be renamed while it is open. Thread-safe.
#ifndef NINO_COMMON_ENV_FAULT_INJECTION_ENV_H_
#define NINO_COMMON_ENV_FAULT_INJECTION_ENV_H_

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/env/env.h"

namespace nino {

class FaultInjectionEnv : public EnvWrapper {
 public:
  enum class Op { kOpen, kWrite, kSync, kRename, kSyncDir, kRemove };
  static constexpr int kNumOps = 6;
  static const char* OpName(Op op);

  explicit FaultInjectionEnv(Env* target = Env::Default()) : EnvWrapper(target) {}

  void FailNth(Op op, int nth, const std::string& path_contains = "");
  void ClearFaults();
  // Calls of `op` seen so far (all paths), and faults injected so far.
  int64_t calls(Op op) const;
  int64_t injected() const;

  // Simulates a power loss (see above). Errors name the file that could not be restored.
  absl::Status DropUnsyncedData();

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override;
  absl::StatusOr<std::unique_ptr<WritableFile>> NewAppendableFile(const std::string& path) override;
  absl::Status RenameFile(const std::string& from, const std::string& to) override;
  absl::Status SyncDir(const std::string& dir) override;
  absl::Status RemoveFile(const std::string& path) override;

 private:
  class File;
  friend class File;
  using Binding = std::optional<int>;  // the inode a name refers to; nullopt: no file
  struct Fault {
    int remaining = 0;  // 0: none pending
    std::string path_contains;
  };

  absl::StatusOr<std::unique_ptr<WritableFile>> Open(const std::string& path, bool truncate);
  // The injected error when a pending fault of `op` matches `path` or `other`; OK otherwise.
  absl::Status MaybeFail(Op op, const std::string& path, const std::string& other = "");
  void RecordSynced(int inode, const std::string& path);
  Binding CurrentBinding(const std::string& path) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Rebind(const std::string& path, Binding b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int NewInode(std::string durable) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::array<Fault, kNumOps> faults_ ABSL_GUARDED_BY(mu_);
  std::array<int64_t, kNumOps> calls_ ABSL_GUARDED_BY(mu_){};
  int64_t injected_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> durable_data_ ABSL_GUARDED_BY(mu_);  // by inode
  std::map<std::string, Binding> live_ ABSL_GUARDED_BY(mu_);    // names this env touched
  // Names whose entry changed since their folder's last SyncDir: the binding a power loss keeps.
  std::map<std::string, Binding> undo_ ABSL_GUARDED_BY(mu_);
};

}  // namespace nino

#endif  // NINO_COMMON_ENV_FAULT_INJECTION_ENV_H_
