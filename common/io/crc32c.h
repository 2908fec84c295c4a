// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI, ext4, LevelDB and
// gRPC-style chunk checksums. Hand-written because Abseil 20220623 has no absl/crc and zlib
// only computes the IEEE CRC-32. Uses the SSE4.2 crc32 instruction where the CPU has it and
// a slicing-by-8 table otherwise; both give identical results.
#ifndef NINO_COMMON_IO_CRC32C_H_
#define NINO_COMMON_IO_CRC32C_H_

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace nino::io {

// Returns the CRC-32C of data[0, n) continuing from `crc`, the CRC-32C of the bytes before
// them (0 for none): Crc32cExtend(Crc32c(a), b) == Crc32c(a + b).
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t n);

// Returns the CRC-32C of `data`. Crc32c("123456789") == 0xE3069283.
inline uint32_t Crc32c(absl::string_view data) { return Crc32cExtend(0, data.data(), data.size()); }

// The table implementation alone (tests compare it with the hardware path).
uint32_t Crc32cExtendPortable(uint32_t crc, const void* data, size_t n);

// True if Crc32cExtend uses the SSE4.2 instruction on this CPU.
bool Crc32cIsHardwareAccelerated();

}  // namespace nino::io

#endif  // NINO_COMMON_IO_CRC32C_H_
