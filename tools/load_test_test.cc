// The load test's short version for CI: a few FM-16 jobs and a small MLP against the real
// nino_nowcaster binary for a few seconds; every prediction must equal the in-process one bit
// for bit, and nothing may be lost (the clients' and the daemon's counters agree). A second run
// makes two jobs send each other's snapshots, to show that the check catches crossed
// predictions. The built-in NiNo model is used: no ../shared needed.
#include "tools/load_test.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "absl/time/time.h"
#include "tools/load_test_nowcaster.h"

namespace nino::load_test {
namespace {

LoadTestOptions ShortRun(const std::string& dir_name) {
  LoadTestOptions o;
  o.nowcaster_binary = DefaultNowcasterBinary();
  o.work_dir = (std::filesystem::path(::testing::TempDir()) / dir_name).string();
  std::filesystem::remove_all(o.work_dir);
  o.server_threads = 1;
  o.workers = 2;
  o.memory_budget_bytes = int64_t{1} << 30;
  o.nowcast_timeout = absl::Seconds(30);
  o.rpc_timeout = absl::Seconds(30);
  return o;
}

TEST(LoadTest, ManyJobsGetExactlyTheirOwnPredictions) {
  LoadTestOptions o = ShortRun("load_clean");
  ASSERT_FALSE(o.nowcaster_binary.empty()) << "nino_nowcaster not found in the runfiles";
  o.jobs = {{"fm16", 4}, {"mlp64", 1}};  // mlp64: 784-64-64-64-10, 59,210 parameters
  o.cases = 2;
  o.duration = absl::Seconds(8);
  absl::StatusOr<LoadReport> r = RunLoadTest(o);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string text = FormatReport(*r);
  EXPECT_TRUE(r->Clean()) << r->Problems() << "\n" << text;
  ASSERT_EQ(r->jobs.size(), 5u);
  for (const JobResult& j : r->jobs) {
    // At least one warm NiNo step per job besides the first (registration) one.
    EXPECT_GE(j.steps_verified, 2) << j.name << "\n" << text;
    EXPECT_EQ(j.steps_bitwise, j.steps_verified) << j.name;
    EXPECT_EQ(j.mismatches, 0) << j.name << ": " << j.first_problem;
    EXPECT_TRUE(j.errors.empty()) << j.name << ": " << j.first_problem;
  }
  EXPECT_TRUE(r->all_bitwise);
  EXPECT_EQ(r->max_abs_diff, 0.0);
  EXPECT_EQ(r->server_predict_ok, static_cast<double>(r->total_verified));
  EXPECT_EQ(r->server_errors, 0.0);
  EXPECT_TRUE(r->clean_exit) << r->exit_problem;
  EXPECT_GT(r->baseline_rss_bytes, 0);
  EXPECT_GE(r->peak_rss_bytes, r->baseline_rss_bytes);
  // Admission control reserved the jobs' footprint, within the budget.
  EXPECT_GT(r->max_reserved_bytes, 0);
  EXPECT_LE(r->max_reserved_bytes, static_cast<double>(o.memory_budget_bytes));
  EXPECT_GT(r->latency_by_kind["all"].count, 0);
  EXPECT_GT(r->latency_by_kind["all"].p99, 0.0);
  EXPECT_NE(ReportJson(*r).find("\"clean\":true"), std::string::npos);
}

// Jobs 0 and 1 upload each other's contexts (and horizons): the daemon answers each with the
// other's prediction, which the check must report as crossed; job 2 stays clean.
TEST(LoadTest, CatchesPredictionsCrossedBetweenJobs) {
  LoadTestOptions o = ShortRun("load_crossed");
  ASSERT_FALSE(o.nowcaster_binary.empty());
  o.jobs = {{"fm16", 3}};
  o.cases = 2;
  o.duration = absl::Seconds(2);
  o.swap_first_two_jobs_for_testing = true;
  absl::StatusOr<LoadReport> r = RunLoadTest(o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->jobs.size(), 3u);
  for (int i : {0, 1}) {
    const JobResult& j = r->jobs[i];
    EXPECT_GT(j.steps_started, 0) << j.name;
    EXPECT_EQ(j.steps_verified, 0) << j.name;
    EXPECT_EQ(j.mismatches, j.steps_started) << j.name;
    // The built-in model (WNN+) has no positional encoding, so job 0's engine makes exactly job
    // 1's prediction from job 1's context: found among job 1's expected predictions.
    EXPECT_EQ(j.crossed, j.mismatches) << j.name << ": " << j.first_problem;
    EXPECT_NE(j.first_problem.find(i == 0 ? "fm16-1 case" : "fm16-0 case"), std::string::npos)
        << j.first_problem;
  }
  EXPECT_EQ(r->jobs[2].steps_verified, r->jobs[2].steps_started);
  EXPECT_GT(r->jobs[2].steps_verified, 0);
  EXPECT_FALSE(r->Clean());
  EXPECT_NE(r->Problems().find("fm16-0:"), std::string::npos) << r->Problems();
  EXPECT_EQ(r->Problems().find("fm16-2:"), std::string::npos) << r->Problems();
}

TEST(LoadTest, RefusesBadOptionsBeforeStartingAnything) {
  LoadTestOptions o = ShortRun("load_bad");
  o.jobs = {{"fm17", 1}};
  absl::StatusOr<LoadReport> r = RunLoadTest(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("fm17"), std::string::npos) << r.status();
  o.jobs = {{"fm16", 0}};
  EXPECT_EQ(RunLoadTest(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.jobs = {{"fm16", 1}};
  o.duration = absl::ZeroDuration();
  EXPECT_EQ(RunLoadTest(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.duration = absl::Seconds(1);
  o.nowcaster_binary = "/nonexistent/nino_nowcaster";
  r = RunLoadTest(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_FALSE(std::filesystem::exists(o.work_dir));  // nothing was started or written
}

TEST(LoadTest, Percentiles) {
  std::vector<double> v;
  for (int i = 1; i <= 200; ++i) v.push_back(i);
  const LatencySummary s = Summarize(v);
  EXPECT_EQ(s.count, 200);
  EXPECT_EQ(s.p50, 100);
  EXPECT_EQ(s.p99, 198);
  EXPECT_EQ(s.max, 200);
  EXPECT_DOUBLE_EQ(s.mean, 100.5);
  EXPECT_EQ(Summarize({}).count, 0);
  EXPECT_EQ(Summarize({0.5}).p99, 0.5);
}

TEST(LoadTest, ReadsPrometheusCounters) {
  const std::string text =
      "# TYPE nino_nowcaster_requests_total counter\n"
      "nino_nowcaster_requests_total{code=\"OK\",method=\"Predict\"} 12\n"
      "nino_nowcaster_requests_total{code=\"UNAVAILABLE\",method=\"Predict\"} 3\n"
      "nino_nowcaster_requests_total{code=\"OK\",method=\"PutState\"} 60\n"
      "nino_nowcaster_requests_total_extra{code=\"OK\",method=\"Predict\"} 99\n"
      "nino_nowcaster_nowcast_seconds_count 15\n";
  const std::string m = "nino_nowcaster_requests_total";
  EXPECT_EQ(SumMetric(text, m, {"method=\"Predict\"", "code=\"OK\""}), 12);
  EXPECT_EQ(SumMetric(text, m, {"method=\"Predict\""}), 15);
  EXPECT_EQ(SumMetric(text, m, {}), 75);
  EXPECT_EQ(SumMetric(text, "nino_nowcaster_nowcast_seconds_count", {}), 15);
  EXPECT_EQ(SumMetric(text, "nino_nowcaster_errors_total", {}), 0);
}

}  // namespace
}  // namespace nino::load_test
