#include "common/io/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#include <nmmintrin.h>
#endif

namespace nino::io {
namespace {

constexpr uint32_t kPolynomial = 0x82F63B78u;  // 0x1EDC6F41 bit-reversed

// kTables[0] is the classic byte table; kTables[j][b] is the CRC of byte b followed by j zero
// bytes, which lets the loop below fold 8 input bytes per iteration (slicing-by-8).
using Tables = std::array<std::array<uint32_t, 256>, 8>;

constexpr Tables MakeTables() {
  Tables t{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t c = b;
    for (int i = 0; i < 8; ++i) c = (c >> 1) ^ ((c & 1u) ? kPolynomial : 0u);
    t[0][b] = c;
  }
  for (int j = 1; j < 8; ++j) {
    for (uint32_t b = 0; b < 256; ++b) t[j][b] = (t[j - 1][b] >> 8) ^ t[0][t[j - 1][b] & 0xFFu];
  }
  return t;
}

constexpr Tables kTables = MakeTables();

inline uint64_t LoadLe64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t ExtendHardwareSerial(uint32_t crc,
                                                                const unsigned char* p, size_t n) {
  uint64_t c = crc;
  for (; n >= 8; n -= 8, p += 8) c = _mm_crc32_u64(c, LoadLe64(p));
  uint32_t c32 = static_cast<uint32_t>(c);
  for (; n > 0; --n, ++p) c32 = _mm_crc32_u8(c32, *p);
  return c32;
}

// The crc32 instruction has a latency of 3 cycles and a throughput of 1 per cycle: one
// dependent chain uses a third of it. Blocks of 3 * kStride bytes run as three independent
// chains, recombined with the CRC register's linearity (raw register, no inversion):
//   R(r, A B C) = Z^2(R(r, A)) ^ Z(R(0, B)) ^ R(0, C),  Z(x) = R(x, kStride zero bytes).
// Z is GF(2)-linear in x, so it is 4 table lookups (one per byte of x).
constexpr size_t kStride = 4096;

struct ShiftTable {
  std::array<std::array<uint32_t, 256>, 4> t;
  uint32_t operator()(uint32_t x) const {
    return t[0][x & 0xFFu] ^ t[1][(x >> 8) & 0xFFu] ^ t[2][(x >> 16) & 0xFFu] ^ t[3][x >> 24];
  }
};

__attribute__((target("sse4.2"))) ShiftTable MakeShiftTable(size_t zero_bytes) {
  static const std::array<unsigned char, 2 * kStride> zeros{};
  // Z applied to each basis vector, by running the register over the zero bytes.
  std::array<uint32_t, 32> basis;
  for (int i = 0; i < 32; ++i) basis[i] = ExtendHardwareSerial(1u << i, zeros.data(), zero_bytes);
  ShiftTable table;
  for (int byte = 0; byte < 4; ++byte) {
    for (uint32_t v = 0; v < 256; ++v) {
      uint32_t out = 0;
      for (int bit = 0; bit < 8; ++bit) {
        if (v & (1u << bit)) out ^= basis[8 * byte + bit];
      }
      table.t[byte][v] = out;
    }
  }
  return table;
}

__attribute__((target("sse4.2"))) uint32_t ExtendHardware(uint32_t crc, const unsigned char* p,
                                                          size_t n) {
  if (n >= 3 * kStride) {
    static const ShiftTable shift1 = MakeShiftTable(kStride);
    static const ShiftTable shift2 = MakeShiftTable(2 * kStride);
    for (; n >= 3 * kStride; n -= 3 * kStride, p += 3 * kStride) {
      uint64_t a = crc, b = 0, c = 0;
      const unsigned char* pa = p;
      const unsigned char* pb = p + kStride;
      const unsigned char* pc = p + 2 * kStride;
      for (size_t i = 0; i < kStride; i += 8) {
        a = _mm_crc32_u64(a, LoadLe64(pa + i));
        b = _mm_crc32_u64(b, LoadLe64(pb + i));
        c = _mm_crc32_u64(c, LoadLe64(pc + i));
      }
      crc = shift2(static_cast<uint32_t>(a)) ^ shift1(static_cast<uint32_t>(b)) ^
            static_cast<uint32_t>(c);
    }
  }
  return ExtendHardwareSerial(crc, p, n);
}

bool CpuHasSse42() {
  unsigned int eax, ebx, ecx, edx;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return false;
  return (ecx & bit_SSE4_2) != 0;
}
#endif

}  // namespace

uint32_t Crc32cExtendPortable(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = ~crc;
  for (; n >= 8; n -= 8, p += 8) {
    const uint64_t v = LoadLe64(p) ^ c;
    c = kTables[7][v & 0xFF] ^ kTables[6][(v >> 8) & 0xFF] ^ kTables[5][(v >> 16) & 0xFF] ^
        kTables[4][(v >> 24) & 0xFF] ^ kTables[3][(v >> 32) & 0xFF] ^ kTables[2][(v >> 40) & 0xFF] ^
        kTables[1][(v >> 48) & 0xFF] ^ kTables[0][v >> 56];
  }
  for (; n > 0; --n, ++p) c = (c >> 8) ^ kTables[0][(c ^ *p) & 0xFFu];
  return ~c;
}

bool Crc32cIsHardwareAccelerated() {
#if defined(__x86_64__)
  static const bool has = CpuHasSse42();  // immutable after first use
  return has;
#else
  return false;
#endif
}

uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t n) {
#if defined(__x86_64__)
  if (Crc32cIsHardwareAccelerated()) {
    return ~ExtendHardware(~crc, static_cast<const unsigned char*>(data), n);
  }
#endif
  return Crc32cExtendPortable(crc, data, n);
}

}  // namespace nino::io
