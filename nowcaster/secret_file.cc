#include "nowcaster/secret_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace nino::nowcaster {
namespace {

constexpr size_t kMaxSecretFileBytes = 1 << 20;

}  // namespace

absl::StatusOr<std::string> ReadSecretFile(absl::string_view flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, "=", path, ": cannot read the file (", std::strerror(errno), ")"));
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  std::string text = contents.str();
  if (text.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, "=", path, ": empty"));
  if (text.size() > kMaxSecretFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, "=", path, ": larger than ", kMaxSecretFileBytes, " bytes"));
  }
  return text;
}

absl::StatusOr<std::string> ReadTokenFile(absl::string_view flag, const std::string& path) {
  absl::StatusOr<std::string> text = ReadSecretFile(flag, path);
  if (!text.ok()) return text.status();
  const absl::string_view token =
      absl::StripAsciiWhitespace(absl::string_view(*text).substr(0, text->find('\n')));
  if (token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, "=", path, ": the first line holds no token"));
  }
  for (char c : token) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c)) || !absl::ascii_isprint(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          flag, "=", path, ": the token on the first line holds a space or control character"));
    }
  }
  return std::string(token);
}

}  // namespace nino::nowcaster
