#include "nowcaster/memory_budget.h"

#include "absl/strings/str_cat.h"

namespace nino::nowcaster {

absl::Status MemoryBudget::Reserve(int64_t bytes, absl::string_view what) {
  absl::MutexLock lock(&mu_);
  if (bytes < 0 || bytes > limit_bytes_ - reserved_bytes_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        what, " needs ", bytes, " bytes of the memory budget; ", limit_bytes_ - reserved_bytes_,
        " of ", limit_bytes_, " bytes are available (--memory_budget_bytes)"));
  }
  reserved_bytes_ += bytes;
  return absl::OkStatus();
}

void MemoryBudget::Release(int64_t bytes) {
  absl::MutexLock lock(&mu_);
  reserved_bytes_ -= bytes;
}

int64_t MemoryBudget::reserved_bytes() const {
  absl::MutexLock lock(&mu_);
  return reserved_bytes_;
}

}  // namespace nino::nowcaster
