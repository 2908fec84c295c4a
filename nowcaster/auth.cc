#include "nowcaster/auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nowcaster/secret_file.h"

namespace nino::nowcaster {
namespace {

bool ValidPrincipalName(absl::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '_' && c != '@' && c != '-') return false;
  }
  return true;
}

bool ValidToken(absl::string_view token) {
  if (token.size() < kMinTokenChars) return false;
  for (char c : token) {
    if (!absl::ascii_isgraph(c)) return false;
  }
  return true;
}

// One non-comment line split into fields; INVALID_ARGUMENT naming `where` (never the token).
absl::StatusOr<std::pair<std::string, Principal>> ParseLine(absl::string_view line,
                                                            const std::string& where) {
  const std::vector<absl::string_view> fields =
      absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
  if (fields.size() < 2 || fields.size() > 3) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": expected '<token> <principal> ",
                                                   "[admin]', got ", fields.size(), " fields"));
  }
  if (!ValidToken(fields[0])) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": the token must be at least ", kMinTokenChars,
                     " printable characters (e.g. `openssl rand -hex 32`)"));
  }
  if (!ValidPrincipalName(fields[1])) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": principal '", fields[1], "' must match [A-Za-z0-9._@-]+"));
  }
  if (fields.size() == 3 && fields[2] != "admin") {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": third field '", fields[2], "': expected 'admin' or nothing"));
  }
  return std::make_pair(std::string(fields[0]),
                        Principal{std::string(fields[1]), fields.size() == 3});
}

}  // namespace

TokenDigest::TokenDigest(absl::string_view token) {
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest_.data());
}

bool TokenDigest::Matches(absl::string_view presented) const {
  const TokenDigest other(presented);
  return CRYPTO_memcmp(digest_.data(), other.digest_.data(), digest_.size()) == 0;
}

absl::StatusOr<absl::string_view> BearerToken(absl::string_view authorization) {
  constexpr absl::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(authorization.substr(0, kScheme.size()), kScheme)) {
    return absl::UnauthenticatedError("the authorization metadata is not 'Bearer <token>'");
  }
  absl::string_view token = absl::StripAsciiWhitespace(authorization.substr(kScheme.size()));
  if (token.empty()) return absl::UnauthenticatedError("the bearer token is empty");
  return token;
}

absl::StatusOr<Authenticator> Authenticator::Parse(absl::string_view text,
                                                   absl::string_view source) {
  Authenticator auth;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    const absl::string_view trimmed = absl::StripAsciiWhitespace(line);
    if (trimmed.empty() || trimmed[0] == '#') continue;
    const std::string where = absl::StrCat(source, " line ", line_number);
    auto entry = ParseLine(trimmed, where);
    if (!entry.ok()) return entry.status();
    for (const Entry& e : auth.entries_) {
      if (e.digest.Matches(entry->first)) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": this token is already given on an earlier line"));
      }
    }
    auth.entries_.push_back({TokenDigest(entry->first), std::move(entry->second)});
  }
  if (auth.entries_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(source,
                                                   ": no '<token> <principal> [admin]' "
                                                   "line (an empty file would turn auth off)"));
  }
  return auth;
}

absl::StatusOr<Authenticator> Authenticator::FromFile(const std::string& path) {
  if (path.empty()) return Authenticator();
  absl::StatusOr<std::string> text = ReadSecretFile("--auth_tokens_file", path);
  if (!text.ok()) return text.status();
  return Parse(*text, absl::StrCat("--auth_tokens_file=", path));
}

size_t Authenticator::num_principals() const {
  std::set<std::string> names;
  for (const Entry& e : entries_) names.insert(e.principal.name);
  return names.size();
}

absl::StatusOr<Principal> Authenticator::Lookup(absl::string_view token) const {
  const Principal* found = nullptr;
  for (const Entry& e : entries_) {  // no early exit: the time does not tell which entry
    if (e.digest.Matches(token)) found = &e.principal;
  }
  if (found == nullptr) return absl::PermissionDeniedError("the bearer token is not known");
  return *found;
}

absl::StatusOr<Principal> Authenticator::Authenticate(
    const grpc::ServerContextBase& context) const {
  if (!enabled()) return Principal{};
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return absl::UnauthenticatedError(
        "this nowcaster needs 'authorization: Bearer <token>' metadata");
  }
  absl::StatusOr<absl::string_view> token =
      BearerToken(absl::string_view(it->second.data(), it->second.size()));
  if (!token.ok()) return token.status();
  return Lookup(*token);
}

absl::Status Authenticator::CheckOwner(const Principal& caller, absl::string_view owner,
                                       absl::string_view job_id) const {
  if (!enabled() || caller.name == owner) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat("job ", job_id, " belongs to another principal than '", caller.name, "'"));
}

absl::Status Authenticator::AuthorizeAdmin(const grpc::ServerContextBase& context,
                                           absl::string_view what) const {
  absl::StatusOr<Principal> caller = Authenticate(context);
  if (!caller.ok()) return caller.status();
  if (enabled() && !caller->admin) {
    return absl::PermissionDeniedError(
        absl::StrCat(what, " needs an admin token; '", caller->name, "' is not an admin"));
  }
  return absl::OkStatus();
}

}  // namespace nino::nowcaster
