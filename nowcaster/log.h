// Start-up and lifecycle messages of the daemon, one line each on stderr.
#ifndef NINO_NOWCASTER_LOG_H_
#define NINO_NOWCASTER_LOG_H_

#include "absl/strings/string_view.h"

namespace nino::nowcaster {

// "I2025-01-31T12:00:00.123 nowcaster] <message>". Thread-safe (one write per line).
void LogInfo(absl::string_view message);
// Same with an "E" prefix.
void LogError(absl::string_view message);

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_LOG_H_
