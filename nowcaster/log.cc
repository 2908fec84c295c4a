#include "nowcaster/log.h"

#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace nino::nowcaster {
namespace {

void Write(char severity, absl::string_view message) {
  const std::string line =
      absl::StrCat(std::string(1, severity),
                   absl::FormatTime("%Y-%m-%dT%H:%M:%E3S", absl::Now(), absl::LocalTimeZone()),
                   " nowcaster] ", message, "\n");
  // One write(2): lines from different threads do not interleave.
  ssize_t unused = ::write(STDERR_FILENO, line.data(), line.size());
  (void)unused;
}

}  // namespace

void LogInfo(absl::string_view message) { Write('I', message); }
void LogError(absl::string_view message) { Write('E', message); }

}  // namespace nino::nowcaster
