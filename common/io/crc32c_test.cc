#include "common/io/crc32c.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace nino::io {
namespace {

TEST(Crc32c, StandardCheckValue) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32cExtendPortable(0, "123456789", 9), 0xE3069283u);
  EXPECT_EQ(Crc32c(""), 0u);
}

// RFC 3720 (iSCSI) appendix B.4 test vectors.
TEST(Crc32c, Rfc3720Vectors) {
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xFF')), 0x62A8AB43u);
  std::string ascending(32, '\0'), descending(32, '\0');
  for (int i = 0; i < 32; ++i) {
    ascending[i] = static_cast<char>(i);
    descending[i] = static_cast<char>(31 - i);
  }
  EXPECT_EQ(Crc32c(ascending), 0x46DD794Eu);
  EXPECT_EQ(Crc32c(descending), 0x113FDB5Cu);
}

TEST(Crc32c, ExtendEqualsWholeAndPathsAgree) {
  std::mt19937 rng(7);
  std::string data(4099, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  const uint32_t whole = Crc32c(data);
  EXPECT_EQ(Crc32cExtendPortable(0, data.data(), data.size()), whole);
  // Every split point and every alignment of the start.
  for (size_t split : {0, 1, 3, 7, 8, 9, 100, 4098, 4099}) {
    uint32_t c = Crc32cExtend(0, data.data(), split);
    EXPECT_EQ(Crc32cExtend(c, data.data() + split, data.size() - split), whole) << split;
  }
  for (size_t start = 0; start < 9; ++start) {
    absl::string_view piece(data.data() + start, data.size() - start - 5);
    EXPECT_EQ(Crc32c(piece), Crc32cExtendPortable(0, piece.data(), piece.size())) << start;
  }
  // Long inputs take the three-chain path (blocks of 3 x 4096 bytes): every length around the
  // block boundaries, every start alignment, against the table implementation.
  std::string big(3 * 3 * 4096 + 100, '\0');
  for (char& c : big) c = static_cast<char>(rng());
  for (size_t n : {size_t{12287}, size_t{12288}, size_t{12289}, size_t{24576 + 7}, big.size()}) {
    for (size_t start : {size_t{0}, size_t{1}, size_t{5}}) {
      if (start + n > big.size()) continue;
      EXPECT_EQ(Crc32cExtend(0x1234u, big.data() + start, n),
                Crc32cExtendPortable(0x1234u, big.data() + start, n))
          << n << " from " << start;
    }
  }
  // A single flipped bit changes the checksum.
  data[1000] ^= 0x10;
  EXPECT_NE(Crc32c(data), whole);
}

}  // namespace
}  // namespace nino::io
