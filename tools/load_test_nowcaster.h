// The nino_nowcaster daemon as a child process of the load test (tools/load_test.h): started on
// a free loopback port with its log in a file, watched through /proc/<pid>/status (resident
// memory, peak resident memory), its Prometheus /metrics read over loopback, and stopped with
// SIGTERM (a clean stop is exit status 0).
//
// Not thread-safe: one owner thread.
#ifndef NINO_TOOLS_LOAD_TEST_NOWCASTER_H_
#define NINO_TOOLS_LOAD_TEST_NOWCASTER_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace nino::load_test {

class NowcasterProcess {
 public:
  // Starts `binary` with `args` plus --address=127.0.0.1:0, --metrics_port=-1 and
  // --metrics_host=127.0.0.1 (the caller must not pass those), stdout and stderr appended to
  // `log_path`, and waits up to `timeout` for its start-up lines. INVALID_ARGUMENT if the
  // binary does not exist; UNAVAILABLE (with the log's tail) if it exits or does not report its
  // ports in time.
  static absl::StatusOr<std::unique_ptr<NowcasterProcess>> Start(
      const std::string& binary, const std::vector<std::string>& args, const std::string& log_path,
      absl::Duration timeout);
  // Kills the process (SIGKILL) if it is still running.
  ~NowcasterProcess();
  NowcasterProcess(const NowcasterProcess&) = delete;
  NowcasterProcess& operator=(const NowcasterProcess&) = delete;

  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  const std::string& log_path() const { return log_path_; }

  // VmRSS / VmHWM (peak) of the running process in bytes; -1 if unreadable (e.g. it exited).
  int64_t ResidentBytes() const;
  int64_t PeakResidentBytes() const;

  // The body of GET /metrics (Prometheus text format); UNAVAILABLE if it cannot be read.
  absl::StatusOr<std::string> Metrics() const;

  // SIGTERM, then waits up to `timeout` for the exit. OK for exit status 0; INTERNAL naming the
  // status (or the signal) otherwise; DEADLINE_EXCEEDED (then SIGKILL) if it did not exit.
  absl::Status Stop(absl::Duration timeout);

 private:
  NowcasterProcess() = default;
  // The last `bytes` of the log.
  std::string LogTail(size_t bytes) const;

  pid_t pid_ = -1;
  bool exited_ = false;
  int port_ = 0;
  int metrics_port_ = 0;
  std::string log_path_;
};

// A field of /proc/<pid>/status ("VmRSS", "VmHWM") in bytes, or -1.
int64_t ProcStatusBytes(pid_t pid, const std::string& field);

// The sum of every sample of `metric` in Prometheus text `exposition` whose labels include each
// of `labels` (e.g. {"method=\"Predict\"", "code=\"OK\""}); 0 if there is none.
double SumMetric(const std::string& exposition, const std::string& metric,
                 const std::vector<std::string>& labels);

// The path of nino_nowcaster: $TEST_SRCDIR's or this executable's runfiles, else next to this
// executable's folder in bazel-bin (tools/../nowcaster/nino_nowcaster); "" if none exists.
std::string DefaultNowcasterBinary();

}  // namespace nino::load_test

#endif  // NINO_TOOLS_LOAD_TEST_NOWCASTER_H_
