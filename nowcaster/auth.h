// Bearer-token authentication and authorization of the nowcaster's calls.
//
// Contract:
//  * The tokens file (--auth_tokens_file) has one principal per line:
//        <token> <principal> [admin]
//    separated by spaces or tabs; blank lines and lines starting with '#' are ignored. A token
//    is at least kMinTokenChars printable characters without spaces (e.g. `openssl rand -hex
//    32`); a principal is [A-Za-z0-9._@-]+ and may have several lines (tokens being rotated);
//    "admin" lets that token call the admin views (ListJobs). A token may appear only once.
//    A malformed file is refused at start with an error naming the line (never its token).
//  * A call presents its token in the metadata `authorization: Bearer <token>`.
//  * Without a tokens file every call is allowed as the anonymous principal (no auth).
//  * RegisterJob needs any principal's token; the job remembers that principal. A job's calls
//    (PutState, Predict, GetJob, CloseJob) need a token of the same principal (besides the job
//    token RegisterJob returned). ListJobs needs an admin token.
//  * Codes: no or malformed `authorization` metadata: UNAUTHENTICATED; a token that is not in
//    the file, another principal's token or a non-admin token for an admin view:
//    PERMISSION_DENIED.
//  * Tokens are kept and compared as SHA-256 digests, every entry compared in constant time
//    (CRYPTO_memcmp) without stopping at a match. No token is ever logged, put in an error
//    message or exported as a metric.
#ifndef NINO_NOWCASTER_AUTH_H_
#define NINO_NOWCASTER_AUTH_H_

#include <grpcpp/grpcpp.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace nino::nowcaster {

inline constexpr size_t kMinTokenChars = 16;

// Who made a call. `name` is empty when authentication is off.
struct Principal {
  std::string name;
  bool admin = false;
};

// A secret kept as its SHA-256 digest.
class TokenDigest {
 public:
  explicit TokenDigest(absl::string_view token);
  // Constant time in the contents of both.
  bool Matches(absl::string_view presented) const;

 private:
  std::array<unsigned char, 32> digest_;
};

// The token of an "authorization" header or metadata value "Bearer <token>" (scheme
// case-insensitive); UNAUTHENTICATED if it has another form.
absl::StatusOr<absl::string_view> BearerToken(absl::string_view authorization);

// Thread-safe after construction (const).
class Authenticator {
 public:
  // Authentication off: every call is the anonymous principal.
  Authenticator() = default;
  // Parses tokens-file text; `source` names the file in errors (INVALID_ARGUMENT with the line
  // number).
  static absl::StatusOr<Authenticator> Parse(absl::string_view text, absl::string_view source);
  // Reads and parses --auth_tokens_file `path`; an empty path gives authentication off.
  static absl::StatusOr<Authenticator> FromFile(const std::string& path);

  bool enabled() const { return !entries_.empty(); }
  // Number of principals (distinct names), for the start-up log.
  size_t num_principals() const;

  // The caller of `context`'s call (see the contract for the codes). Synchronous and callback
  // calls alike (grpc::ServerContext, grpc::CallbackServerContext).
  absl::StatusOr<Principal> Authenticate(const grpc::ServerContextBase& context) const;
  // The principal a bare token belongs to; PERMISSION_DENIED if none.
  absl::StatusOr<Principal> Lookup(absl::string_view token) const;
  // OK when authentication is off or `caller` registered the job (`owner`); PERMISSION_DENIED.
  absl::Status CheckOwner(const Principal& caller, absl::string_view owner,
                          absl::string_view job_id) const;
  // Authenticate, then PERMISSION_DENIED unless the caller is an admin (or auth is off).
  absl::Status AuthorizeAdmin(const grpc::ServerContextBase& context, absl::string_view what) const;

 private:
  struct Entry {
    TokenDigest digest;
    Principal principal;
  };
  std::vector<Entry> entries_;
};

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_AUTH_H_
