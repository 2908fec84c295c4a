// Process-wide heap settings for tensor workloads.
#ifndef NINO_COMMON_RUNTIME_ALLOCATOR_H_
#define NINO_COMMON_RUNTIME_ALLOCATOR_H_

#include <cstddef>

namespace nino::runtime {

// glibc's malloc, by default, serves blocks above a dynamic threshold with mmap and gives freed
// memory at the top of the heap back to the kernel; a training step that allocates and frees the
// same few MB of activations every iteration then page-faults them in again every time. Measured
// on FM-16 (batch 128, 1 thread): 8.4 CPU-time steps/s with the defaults, 56 with this setting.
// Keeps blocks up to 32 MiB on the heap and retains up to 1 GiB of free heap. A no-op where the
// user set GLIBC_TUNABLES or MALLOC_TRIM_THRESHOLD_/MALLOC_MMAP_THRESHOLD_ (their choice wins)
// and on other C libraries. Call once at the start of main().
void TuneAllocatorForTensors();

// Zero-filled anonymous memory for a large, long-lived buffer (a parameter snapshot), mapped
// with mmap and, where the kernel's transparent huge pages are available ("always" or
// "madvise"), advised MADV_HUGEPAGE: filling it then costs one page fault per 2 MiB instead of
// one per 4 KiB (on a virtual machine a fault costs microseconds: 100 MB of 4 KiB pages is
// ~25,000 faults). nullptr if the mapping fails. Free with UnmapLargeBuffer(p, bytes).
void* MapLargeBuffer(size_t bytes);
void UnmapLargeBuffer(void* p, size_t bytes);

}  // namespace nino::runtime

#endif  // NINO_COMMON_RUNTIME_ALLOCATOR_H_
