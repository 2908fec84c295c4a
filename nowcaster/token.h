// Job tokens: unguessable bearer secrets returned by RegisterJob.
#ifndef NINO_NOWCASTER_TOKEN_H_
#define NINO_NOWCASTER_TOKEN_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace nino::nowcaster {

// 2 * num_bytes lowercase hex characters read from /dev/urandom. INTERNAL if it cannot be read.
absl::StatusOr<std::string> RandomHexToken(int num_bytes = 16);

// Compares in time independent of where the strings differ (no timing oracle for guessing).
bool TokensEqual(absl::string_view a, absl::string_view b);

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_TOKEN_H_
