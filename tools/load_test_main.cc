// nino_load_test: many training jobs against one nino_nowcaster (tools/load_test.h).
//
//   bazel build //tools:nino_load_test //nowcaster:nino_nowcaster
//   ./bazel-bin/tools/nino_load_test --jobs=fm16:16,mlp512:2 --duration_s=180
//       --server_threads=1 --workers=2 --json_out=/tmp/load.json   (one command line)
//
// Starts the nino_nowcaster binary (--nowcaster_binary; default: the one built beside this
// tool) on a free loopback port, runs the jobs for --duration_s, checks every prediction against
// the in-process one, stops the daemon with SIGTERM and prints the tables and one JSON line.
// Exit status: 0 when nothing was lost or crossed, 3 when something was, 1 when the test could
// not run, 2 for bad flags. tools/load_test.sh runs the full 16 + 2 job load.
#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/runtime/allocator.h"
#include "tools/load_test.h"

namespace {
const nino::load_test::LoadTestOptions kDefaults;
}  // namespace

ABSL_FLAG(std::string, jobs, "fm16:16,mlp512:2",
          "comma-separated kind:count; kinds: fm16, fm32, mlp512, lm, ... (tools/bench_models.h) "
          "or mlp<H> (MLP 784-H-H-H-10)");
ABSL_FLAG(double, duration_s, 60, "seconds during which NiNo periods start");
ABSL_FLAG(int, pause_ms, 0, "pause between a job's NiNo periods (0: ask again at once)");
ABSL_FLAG(int, cases, kDefaults.cases, "distinct snapshot contexts per job, cycled through");
ABSL_FLAG(uint64_t, seed, kDefaults.seed, "job i uses seed + i");
ABSL_FLAG(std::string, nino_model, kDefaults.nino_model,
          "NiNo model for the daemon and the in-process check: default (built in), an official "
          "name, or a checkpoint file");
ABSL_FLAG(double, tolerance, kDefaults.tolerance,
          "largest |remote - in-process| accepted; 0 = bit for bit");
ABSL_FLAG(std::string, nowcaster_binary, "",
          "nino_nowcaster to start (default: the one built beside this tool)");
ABSL_FLAG(int, server_threads, kDefaults.server_threads, "daemon --threads");
ABSL_FLAG(int, workers, kDefaults.workers, "daemon --workers");
ABSL_FLAG(int, queue_length, kDefaults.queue_length, "daemon --queue_length (0 = number of jobs)");
ABSL_FLAG(int64_t, memory_budget_bytes, kDefaults.memory_budget_bytes,
          "daemon --memory_budget_bytes");
ABSL_FLAG(int, verify_threads, kDefaults.verify_threads,
          "LibTorch threads of this process for the in-process predictions (0 = server_threads)");
ABSL_FLAG(double, nowcast_timeout_s, 120, "deadline of one NiNo step (client)");
ABSL_FLAG(std::string, work_dir, "", "folder for the daemon's log (default: a new one in /tmp)");
ABSL_FLAG(std::string, json_out, "", "also write the JSON report to this file");

namespace {

absl::StatusOr<std::vector<std::pair<std::string, int>>> ParseJobs(const std::string& text) {
  std::vector<std::pair<std::string, int>> jobs;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    std::vector<std::string> parts = absl::StrSplit(item, ':');
    int count = 0;
    if (parts.size() != 2 || parts[0].empty() || !absl::SimpleAtoi(parts[1], &count)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--jobs: '", item, "' is not kind:count (e.g. fm16:16)"));
    }
    jobs.push_back({parts[0], count});
  }
  return jobs;
}

}  // namespace

int main(int argc, char** argv) {
  nino::runtime::TuneAllocatorForTensors();
  absl::SetProgramUsageMessage(
      "Many training jobs streaming and predicting against one nino_nowcaster; every prediction "
      "checked against the in-process NiNo step.");
  absl::ParseCommandLine(argc, argv);

  nino::load_test::LoadTestOptions o;
  absl::StatusOr<std::vector<std::pair<std::string, int>>> jobs =
      ParseJobs(absl::GetFlag(FLAGS_jobs));
  if (!jobs.ok()) {
    std::fprintf(stderr, "error: %s\n", jobs.status().ToString().c_str());
    return 2;
  }
  o.jobs = std::move(*jobs);
  o.duration = absl::Seconds(absl::GetFlag(FLAGS_duration_s));
  o.pause = absl::Milliseconds(absl::GetFlag(FLAGS_pause_ms));
  o.cases = absl::GetFlag(FLAGS_cases);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.nino_model = absl::GetFlag(FLAGS_nino_model);
  o.tolerance = absl::GetFlag(FLAGS_tolerance);
  o.nowcaster_binary = absl::GetFlag(FLAGS_nowcaster_binary);
  o.server_threads = absl::GetFlag(FLAGS_server_threads);
  o.workers = absl::GetFlag(FLAGS_workers);
  o.queue_length = absl::GetFlag(FLAGS_queue_length);
  o.memory_budget_bytes = absl::GetFlag(FLAGS_memory_budget_bytes);
  o.verify_threads = absl::GetFlag(FLAGS_verify_threads);
  o.nowcast_timeout = absl::Seconds(absl::GetFlag(FLAGS_nowcast_timeout_s));
  o.work_dir = absl::GetFlag(FLAGS_work_dir);

  absl::StatusOr<nino::load_test::LoadReport> report = nino::load_test::RunLoadTest(o);
  if (!report.ok()) {
    std::fprintf(stderr, "error: %s\n", report.status().ToString().c_str());
    return report.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  const std::string json = nino::load_test::ReportJson(*report);
  std::printf("%s\n%s\n", nino::load_test::FormatReport(*report).c_str(), json.c_str());
  if (const std::string path = absl::GetFlag(FLAGS_json_out); !path.empty()) {
    std::ofstream(path) << json << "\n";
  }
  return report->Clean() ? 0 : 3;
}
