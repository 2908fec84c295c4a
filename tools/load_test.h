// The nowcaster load test (issue 13): many training jobs stream snapshots to one nino_nowcaster
// and ask it for NiNo steps, concurrently, for a bounded time, through the project's C++ client
// (client/remote_nowcaster.h, the path nino_train takes), and every returned prediction is
// checked against an in-process NowcastEngine run on the same snapshots with the same NiNo
// model.
//
// Each job (tools/load_test_jobs.h) runs on its own thread with its own RemoteNowcaster (its own
// channel and upload thread) and repeats NiNo periods until the time is up: the 4 earlier
// snapshots of the period are handed to StateRecorded (streamed by the client's upload thread)
// and their uploads awaited; then the timed NiNo step: Nowcast() uploads the newest snapshot,
// calls Predict, receives and checks the prediction, and this test compares it with the
// expected one. The latency of a NiNo step runs from the start of the last upload to the
// verified prediction. Periods cycle through the job's cases; steps grow by the period, so every
// period uploads 5 fresh snapshots.
//
// "Nothing lost": every NiNo step either returns the expected prediction or is counted as an
// error by status code; the clients' counters show every snapshot uploaded once (no failed,
// dropped or re-sent upload, one registration per job); the daemon's own counters (/metrics)
// show as many successful Predict and PutState calls as the clients made and no failed call.
// "Nothing crossed": a prediction that differs from its own case is looked up among every job's
// expected predictions and reported as crossed from that job and case (or as wrong).
#ifndef NINO_TOOLS_LOAD_TEST_H_
#define NINO_TOOLS_LOAD_TEST_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace nino::load_test {

struct LoadTestOptions {
  // Jobs: kind (tools/load_test_jobs.h) and how many of it. Job i of the whole list has seed
  // `seed + i` (its parameters, trajectories and positional-encoding signs).
  std::vector<std::pair<std::string, int>> jobs = {{"fm16", 16}, {"mlp512", 2}};
  uint64_t seed = 1000;
  int cases = 3;  // distinct contexts per job, cycled through
  // NiNo periods start until this much time has passed since the first one; the periods in
  // flight then finish (within nowcast_timeout).
  absl::Duration duration = absl::Seconds(60);
  // Pause between a job's NiNo periods (0: every job asks again at once, the heaviest load).
  absl::Duration pause = absl::ZeroDuration();

  // The NiNo model: "default" (built in), an official name or a checkpoint file. The daemon is
  // started with the same value; the jobs leave the model name empty (the daemon's default).
  std::string nino_model = "default";
  // Predictions must equal the in-process ones bit for bit (0), or be within this absolute
  // difference.
  double tolerance = 0;

  // The daemon (a child process): its binary (empty: DefaultNowcasterBinary()) and settings.
  std::string nowcaster_binary;
  int server_threads = 1;  // --threads (LibTorch intra-op threads)
  int workers = 2;         // --workers (nowcasts at once)
  int queue_length = 0;    // --queue_length; 0: the number of jobs (none is ever refused)
  int64_t memory_budget_bytes = int64_t{4} << 30;  // --memory_budget_bytes
  std::string work_dir;                            // the daemon's log; empty: a temporary folder
  // LibTorch threads of this process (the in-process predictions); 0: server_threads.
  int verify_threads = 0;

  absl::Duration nowcast_timeout = absl::Seconds(120);  // RemoteNowcasterOptions
  absl::Duration rpc_timeout = absl::Seconds(60);

  // Test hook, never set in a measured run: jobs 0 and 1 upload each other's contexts (as if
  // the daemon crossed their snapshots), so their predictions must be reported as crossed.
  bool swap_first_two_jobs_for_testing = false;
};

// Latency summary of NiNo steps, seconds (nearest-rank percentiles; 0 when empty).
struct LatencySummary {
  int64_t count = 0;
  double p50 = 0, p99 = 0, max = 0, mean = 0;
};
LatencySummary Summarize(std::vector<double> seconds);

struct JobResult {
  std::string name, kind;
  int64_t num_params = 0;
  double inprocess_step_s = 0;            // the same NiNo step in this process, unloaded (mean)
  int64_t steps_started = 0;              // NiNo steps asked for
  int64_t steps_verified = 0;             // returned and equal to the in-process prediction
  int64_t steps_bitwise = 0;              // of those, bit for bit
  int64_t mismatches = 0;                 // returned but different (crossed + wrong)
  int64_t crossed = 0;                    // equal to another job's or case's prediction
  double max_abs_diff = 0;                // over the returned predictions
  std::map<std::string, int64_t> errors;  // failed NiNo steps by status code name
  std::string first_problem;              // the first error or mismatch, for the report
  // The first NiNo period, from its first snapshot to the verified prediction (registration,
  // the daemon's graph build and all 5 uploads included).
  double first_step_s = 0;
  std::vector<double> step_s;  // the later verified NiNo steps (from the last upload)
  double upload_wait_s = 0;    // total time waiting for background uploads
  // The client's counters (RemoteNowcaster::Stats) at the end.
  int64_t registrations = 0, register_failures = 0, uploads = 0, upload_failures = 0,
          uploads_dropped = 0, context_resends = 0, failovers = 0, predictions = 0,
          prediction_failures = 0;
};

struct LoadReport {
  std::vector<JobResult> jobs;
  double run_s = 0;      // from the first NiNo period's start to the last one's end
  double prepare_s = 0;  // building the jobs and their in-process predictions
  int64_t total_verified = 0, total_mismatches = 0, total_crossed = 0, total_errors = 0;
  double steps_per_s = 0;        // verified NiNo steps per second of run_s
  double uploaded_mb_per_s = 0;  // snapshot bytes the clients uploaded per second of run_s
  double max_abs_diff = 0;
  bool all_bitwise = false;
  std::map<std::string, LatencySummary> latency_by_kind;  // warm steps; "all" = every job
  std::map<std::string, LatencySummary> first_step_by_kind;

  // The daemon.
  std::string nowcaster_binary, nowcaster_log;
  int64_t baseline_rss_bytes = -1;  // VmRSS once started, before any job
  int64_t peak_rss_bytes = -1;      // VmHWM at the end of the run (the whole life so far)
  int64_t end_rss_bytes = -1;       // VmRSS at the end of the run
  int64_t memory_budget_bytes = 0;
  bool clean_exit = false;  // SIGTERM -> exit status 0
  std::string exit_problem;
  // From its /metrics at the end of the run: calls by method with code OK, and failed calls.
  double server_predict_ok = -1, server_putstate_ok = -1, server_register_ok = -1,
         server_errors = -1, server_nowcasts = -1, server_nowcast_seconds = -1;
  // Sampled from /metrics and /proc every 0.5 s while the jobs run: the most memory reserved by
  // admission control (snapshots, graphs, working memory of the open jobs), the longest queue
  // of Predict requests waiting for a worker, the largest VmRSS seen.
  double max_reserved_bytes = -1, max_queue_depth = -1;
  int64_t max_sampled_rss_bytes = -1;

  // This process and the machine.
  int64_t client_peak_rss_bytes = -1;
  std::string loadavg_before, loadavg_after;  // /proc/loadavg
  int cores = 0;
  std::string cpu_model;
  LoadTestOptions options;

  // True when nothing was lost or crossed: every NiNo step verified, no error, every upload
  // made once, the daemon's counters agree with the clients', and it stopped cleanly.
  bool Clean() const;
  // Every reason Clean() is false, one per line ("" when clean).
  std::string Problems() const;
};

// Builds the jobs and their expected predictions, starts the daemon, runs the jobs, stops the
// daemon. A Status only when the test could not run (bad options, the daemon would not start, a
// job could not be built); what happened during the run is in the report.
absl::StatusOr<LoadReport> RunLoadTest(const LoadTestOptions& options);

// The report as text tables (per job and per kind) and as one JSON object.
std::string FormatReport(const LoadReport& report);
std::string ReportJson(const LoadReport& report);

}  // namespace nino::load_test

#endif  // NINO_TOOLS_LOAD_TEST_H_
