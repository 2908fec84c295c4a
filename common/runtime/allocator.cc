#include "common/runtime/allocator.h"

#include <cstdlib>
#include <cstring>

#include <sys/mman.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace nino::runtime {

void TuneAllocatorForTensors() {
#if defined(__GLIBC__)
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if ((tunables && std::strstr(tunables, "glibc.malloc.")) || std::getenv("MALLOC_TRIM_THRESHOLD_") ||
      std::getenv("MALLOC_MMAP_THRESHOLD_")) {
    return;
  }
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

void* MapLargeBuffer(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
#if defined(MADV_HUGEPAGE)
  // Advisory: fails harmlessly where THP is off or unsupported.
  (void)madvise(p, bytes, MADV_HUGEPAGE);
#endif
  return p;
}

void UnmapLargeBuffer(void* p, size_t bytes) {
  if (p != nullptr && bytes > 0) munmap(p, bytes);
}

}  // namespace nino::runtime
