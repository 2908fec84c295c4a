#include "common/env/fault_injection_env.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/env/write_file_atomically.h"

namespace nino {
namespace fs = std::filesystem;

namespace {

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool IsRegularFile(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

// The folder of `path`, spelled the way SyncDir's argument is compared.
std::string NormalFolder(const std::string& path_or_dir, bool is_dir) {
  std::string d = is_dir ? path_or_dir : DirectoryOf(path_or_dir);
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  return fs::path(d).lexically_normal().string();
}

absl::Status WriteWholeFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("power loss: cannot restore ", path));
  return absl::OkStatus();
}

}  // namespace

// A file opened through the env: faults on Append and Sync, durability recorded on Sync.
class FaultInjectionEnv::File : public WritableFile {
 public:
  File(FaultInjectionEnv* env, std::unique_ptr<WritableFile> target, int inode, std::string path)
      : env_(env), target_(std::move(target)), inode_(inode), path_(std::move(path)) {}

  absl::Status Append(absl::string_view data) override {
    if (absl::Status s = env_->MaybeFail(Op::kWrite, path_); !s.ok()) {
      (void)target_->Append(data.substr(0, data.size() / 2));  // torn write
      (void)target_->Flush();
      return s;
    }
    return target_->Append(data);
  }
  absl::Status Flush() override { return target_->Flush(); }
  absl::Status Sync() override {
    if (absl::Status s = target_->Flush(); !s.ok()) return s;
    if (absl::Status s = env_->MaybeFail(Op::kSync, path_); !s.ok()) return s;
    if (absl::Status s = target_->Sync(); !s.ok()) return s;
    env_->RecordSynced(inode_, path_);
    return absl::OkStatus();
  }
  absl::Status Close() override { return target_->Close(); }

 private:
  FaultInjectionEnv* env_;
  std::unique_ptr<WritableFile> target_;
  int inode_;
  std::string path_;
};

const char* FaultInjectionEnv::OpName(Op op) {
  static const char* const kNames[kNumOps] = {"open",   "write",     "fsync",
                                              "rename", "dir fsync", "remove"};
  return kNames[static_cast<int>(op)];
}

void FaultInjectionEnv::FailNth(Op op, int nth, const std::string& path_contains) {
  absl::MutexLock l(&mu_);
  faults_[static_cast<int>(op)] = Fault{nth, path_contains};
}

void FaultInjectionEnv::ClearFaults() {
  absl::MutexLock l(&mu_);
  faults_.fill(Fault{});
}

int64_t FaultInjectionEnv::calls(Op op) const {
  absl::MutexLock l(&mu_);
  return calls_[static_cast<int>(op)];
}

int64_t FaultInjectionEnv::injected() const {
  absl::MutexLock l(&mu_);
  return injected_;
}

absl::Status FaultInjectionEnv::MaybeFail(Op op, const std::string& path,
                                          const std::string& other) {
  absl::MutexLock l(&mu_);
  ++calls_[static_cast<int>(op)];
  Fault& f = faults_[static_cast<int>(op)];
  if (f.remaining <= 0) return absl::OkStatus();
  const bool matches = absl::StrContains(path, f.path_contains) ||
                       (!other.empty() && absl::StrContains(other, f.path_contains));
  if (!matches || --f.remaining > 0) return absl::OkStatus();
  ++injected_;
  return absl::InternalError(
      absl::StrCat("injected fault: ", OpName(op), " ", path, other.empty() ? "" : " -> ", other));
}

int FaultInjectionEnv::NewInode(std::string durable) {
  durable_data_.push_back(std::move(durable));
  return static_cast<int>(durable_data_.size()) - 1;
}

FaultInjectionEnv::Binding FaultInjectionEnv::CurrentBinding(const std::string& path) {
  auto it = live_.find(path);
  if (it != live_.end()) return it->second;
  // First sight of this name: whatever is on disk now counts as durable.
  Binding b;
  if (IsRegularFile(path)) b = NewInode(ReadWholeFile(path));
  live_[path] = b;
  return b;
}

void FaultInjectionEnv::Rebind(const std::string& path, Binding b) {
  const Binding before = CurrentBinding(path);
  undo_.emplace(path, before);  // keeps the binding of the last SyncDir when already present
  live_[path] = b;
}

void FaultInjectionEnv::RecordSynced(int inode, const std::string& path) {
  std::string data = ReadWholeFile(path);
  absl::MutexLock l(&mu_);
  durable_data_[inode] = std::move(data);
}

absl::StatusOr<std::unique_ptr<WritableFile>> FaultInjectionEnv::Open(const std::string& path,
                                                                      bool truncate) {
  if (absl::Status s = MaybeFail(Op::kOpen, path); !s.ok()) return s;
  Binding b;
  {
    absl::MutexLock l(&mu_);
    b = CurrentBinding(path);  // before the open truncates the file
  }
  auto f = truncate ? target()->NewWritableFile(path) : target()->NewAppendableFile(path);
  if (!f.ok()) return f.status();
  absl::MutexLock l(&mu_);
  if (!b.has_value()) {
    b = NewInode("");
    Rebind(path, b);
  }
  return std::unique_ptr<WritableFile>(new File(this, std::move(*f), *b, path));
}

absl::StatusOr<std::unique_ptr<WritableFile>> FaultInjectionEnv::NewWritableFile(
    const std::string& path) {
  return Open(path, /*truncate=*/true);
}

absl::StatusOr<std::unique_ptr<WritableFile>> FaultInjectionEnv::NewAppendableFile(
    const std::string& path) {
  return Open(path, /*truncate=*/false);
}

absl::Status FaultInjectionEnv::RenameFile(const std::string& from, const std::string& to) {
  if (absl::Status s = MaybeFail(Op::kRename, from, to); !s.ok()) return s;
  {
    absl::MutexLock l(&mu_);
    CurrentBinding(from);  // adopt both names before the disk changes
    CurrentBinding(to);
  }
  if (absl::Status s = target()->RenameFile(from, to); !s.ok()) return s;
  absl::MutexLock l(&mu_);
  Rebind(to, CurrentBinding(from));
  Rebind(from, std::nullopt);
  return absl::OkStatus();
}

absl::Status FaultInjectionEnv::RemoveFile(const std::string& path) {
  if (absl::Status s = MaybeFail(Op::kRemove, path); !s.ok()) return s;
  {
    absl::MutexLock l(&mu_);
    CurrentBinding(path);
  }
  if (absl::Status s = target()->RemoveFile(path); !s.ok()) return s;
  absl::MutexLock l(&mu_);
  Rebind(path, std::nullopt);
  return absl::OkStatus();
}

absl::Status FaultInjectionEnv::SyncDir(const std::string& dir) {
  if (absl::Status s = MaybeFail(Op::kSyncDir, dir); !s.ok()) return s;
  if (absl::Status s = target()->SyncDir(dir); !s.ok()) return s;
  absl::MutexLock l(&mu_);
  const std::string folder = NormalFolder(dir, /*is_dir=*/true);
  for (auto it = undo_.begin(); it != undo_.end();) {
    it = NormalFolder(it->first, /*is_dir=*/false) == folder ? undo_.erase(it) : std::next(it);
  }
  return absl::OkStatus();
}

absl::Status FaultInjectionEnv::DropUnsyncedData() {
  absl::MutexLock l(&mu_);
  std::map<std::string, Binding> survivors = live_;
  for (const auto& [path, b] : undo_) survivors[path] = b;
  absl::Status status;
  for (const auto& [path, b] : survivors) {
    if (!b.has_value()) {
      std::error_code ec;
      fs::remove(path, ec);
      if (ec && status.ok())
        status = absl::InternalError(absl::StrCat("power loss: cannot remove ", path));
    } else if (absl::Status s = WriteWholeFile(path, durable_data_[*b]); !s.ok() && status.ok()) {
      status = s;
    }
  }
  live_.clear();
  undo_.clear();
  durable_data_.clear();
  return status;
}

}  // namespace nino
