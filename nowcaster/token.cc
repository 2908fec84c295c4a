#include "nowcaster/token.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace nino::nowcaster {

absl::StatusOr<std::string> RandomHexToken(int num_bytes) {
  std::vector<char> bytes(num_bytes > 0 ? num_bytes : 16);
  FILE* f = std::fopen("/dev/urandom", "rb");
  if (f == nullptr) {
    return absl::InternalError(absl::StrCat("cannot open /dev/urandom: ", std::strerror(errno)));
  }
  const size_t got = std::fread(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
  if (got != bytes.size()) {
    return absl::InternalError(
        absl::StrCat("short read from /dev/urandom: ", got, " of ", bytes.size(), " bytes"));
  }
  return absl::BytesToHexString(absl::string_view(bytes.data(), bytes.size()));
}

bool TokensEqual(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace nino::nowcaster
