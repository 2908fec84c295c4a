#include "tools/load_test.h"

#include <sys/resource.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "client/remote_nowcaster.h"
#include "common/nino/model_catalog.h"
#include "tools/load_test_jobs.h"
#include "tools/load_test_nowcaster.h"

namespace nino::load_test {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::string ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// "model name" of /proc/cpuinfo.
std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon != std::string::npos) {
      return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    }
  }
  return "unknown";
}

int64_t OwnPeakRssBytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;
}

absl::Status Validate(const LoadTestOptions& o) {
  int total = 0;
  for (const auto& [kind, count] : o.jobs) {
    if (absl::Status s = CheckKind(kind); !s.ok()) return s;
    if (count < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("jobs: ", count, " of ", kind, ", expected >= 0"));
    }
    total += count;
  }
  if (total < 1) return absl::InvalidArgumentError("jobs: none (expected at least one job)");
  if (o.swap_first_two_jobs_for_testing && (total < 2 || o.jobs.front().second < 2)) {
    return absl::InvalidArgumentError(
        "swap_first_two_jobs_for_testing needs two jobs of the first kind");
  }
  if (o.cases < 1)
    return absl::InvalidArgumentError(absl::StrCat("cases: ", o.cases, ", expected >= 1"));
  if (o.duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("duration: ", absl::FormatDuration(o.duration), ", expected > 0"));
  }
  if (o.pause < absl::ZeroDuration()) return absl::InvalidArgumentError("pause: must be >= 0");
  if (o.server_threads < 1 || o.workers < 1 || o.queue_length < 0 || o.verify_threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("server_threads ", o.server_threads, ", workers ", o.workers,
                     ", queue_length ", o.queue_length, ", verify_threads ", o.verify_threads,
                     ": expected threads and workers >= 1, queue length and verify threads >= 0"));
  }
  if (o.memory_budget_bytes < 1)
    return absl::InvalidArgumentError("memory_budget_bytes: must be > 0");
  if (!(o.tolerance >= 0)) return absl::InvalidArgumentError("tolerance: must be >= 0");
  if (o.nowcast_timeout <= absl::ZeroDuration() || o.rpc_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("nowcast_timeout and rpc_timeout must be > 0");
  }
  return absl::OkStatus();
}

// What one job's thread shares with the others.
struct Shared {
  const std::vector<LoadJob>* jobs = nullptr;
  const LoadTestOptions* options = nullptr;
  std::string address;
  absl::Notification go;
  Clock::time_point start;  // set before go is notified
  Clock::time_point end_of_starts;
  std::atomic<int> done{0};  // jobs finished
  absl::Notification all_done;
};

void RunJob(int index, Shared* shared, JobResult* result, Clock::time_point* finished) {
  const LoadJob& job = (*shared->jobs)[index];
  const LoadTestOptions& o = *shared->options;
  // The test hook: jobs 0 and 1 send each other's contexts and horizons.
  const bool swapped = o.swap_first_two_jobs_for_testing && index < 2;
  const LoadJob& source = swapped ? (*shared->jobs)[1 - index] : job;

  client::RemoteNowcasterOptions ro;
  ro.address = shared->address;
  ro.job_id = client::MakeJobId(job.name, job.seed);
  ro.params = job.shapes;
  ro.graph = job.graph;
  ro.nino_model = "";  // the daemon's default: the model it was started with
  ro.lpe_seed = job.seed;
  ro.nowcast_timeout = o.nowcast_timeout;
  ro.rpc_timeout = o.rpc_timeout;
  ro.quiet = true;

  result->name = job.name;
  result->kind = job.kind;
  result->num_params = job.num_params;
  result->inprocess_step_s = job.inprocess_step_s;
  {
    client::RemoteNowcaster client(ro);
    shared->go.WaitForNotification();
    const int64_t interval = ro.period / ro.ctx;
    for (int64_t period = 0; Clock::now() < shared->end_of_starts; ++period) {
      const Clock::time_point period_start = Clock::now();
      const int c = static_cast<int>(period % static_cast<int64_t>(job.contexts.size()));
      const torch::Tensor& states = source.contexts[c];
      const int k = source.ks[c];
      const int64_t step = (period + 1) * ro.period - 1;  // the period's NiNo step
      // The period's earlier snapshots, streamed in the background as during training.
      for (int64_t s = 0; s + 1 < ro.ctx; ++s) {
        client.StateRecorded(step - (ro.ctx - 1 - s) * interval, states[s]);
      }
      const Clock::time_point wait0 = Clock::now();
      (void)client.WaitForUploads(o.rpc_timeout);  // Nowcast() waits too, within its deadline
      const Clock::time_point t0 = Clock::now();
      result->upload_wait_s += SecondsBetween(wait0, t0);

      ++result->steps_started;
      client.SetNinoStep(step);
      absl::StatusOr<torch::Tensor> prediction = client.Nowcast(states, k);
      if (!prediction.ok()) {
        ++result->errors[absl::StatusCodeToString(prediction.status().code())];
        if (result->first_problem.empty()) {
          result->first_problem =
              absl::StrCat("period ", period, ": ", prediction.status().ToString());
        }
      } else {
        const Verdict v = Compare(*prediction, job.expected[c], o.tolerance);
        const double seconds = SecondsBetween(t0, Clock::now());
        result->max_abs_diff = std::max(result->max_abs_diff, v.max_abs_diff);
        if (v.matches) {
          ++result->steps_verified;
          if (v.bitwise) ++result->steps_bitwise;
          if (period == 0) {  // cold: registration and graph build included
            result->first_step_s = SecondsBetween(period_start, Clock::now());
          } else {
            result->step_s.push_back(seconds);
          }
        } else {
          ++result->mismatches;
          const std::string owner = FindOwner(*prediction, *shared->jobs, o.tolerance);
          if (!owner.empty()) ++result->crossed;
          if (result->first_problem.empty()) {
            result->first_problem = absl::StrCat(
                "period ", period, " (case ", c, "): max |diff| ", v.max_abs_diff,
                owner.empty() ? " (matches no job's prediction)"
                              : absl::StrCat(" (it is the prediction of ", owner, ")"));
          }
        }
      }
      if (o.pause > absl::ZeroDuration()) absl::SleepFor(o.pause);
    }
    const client::RemoteNowcaster::Stats st = client.stats();
    result->registrations = st.registrations;
    result->register_failures = st.register_failures;
    result->uploads = st.uploads;
    result->upload_failures = st.upload_failures;
    result->uploads_dropped = st.uploads_dropped;
    result->context_resends = st.context_resends;
    result->failovers = st.failovers;
    result->predictions = st.predictions;
    result->prediction_failures = st.prediction_failures;
  }  // the client closes its job
  *finished = Clock::now();
  if (shared->done.fetch_add(1) + 1 == static_cast<int>(shared->jobs->size())) {
    shared->all_done.Notify();
  }
}

// Nowcaster settings as command-line flags.
std::vector<std::string> DaemonArgs(const LoadTestOptions& o, int queue_length) {
  return {absl::StrCat("--nino_model=", o.nino_model),
          "--allow_download=false",
          absl::StrCat("--threads=", o.server_threads),
          absl::StrCat("--workers=", o.workers),
          absl::StrCat("--queue_length=", queue_length),
          absl::StrCat("--memory_budget_bytes=", o.memory_budget_bytes),
          "--lame_duck_ms=0",
          "--shutdown_deadline_ms=10000"};
}

void SampleDaemon(const NowcasterProcess& daemon, LoadReport* report) {
  report->max_sampled_rss_bytes = std::max(report->max_sampled_rss_bytes, daemon.ResidentBytes());
  absl::StatusOr<std::string> m = daemon.Metrics();
  if (!m.ok()) return;
  report->max_reserved_bytes = std::max(
      report->max_reserved_bytes, SumMetric(*m, "nino_nowcaster_state_memory_reserved_bytes", {}));
  report->max_queue_depth =
      std::max(report->max_queue_depth, SumMetric(*m, "nino_nowcaster_queue_depth", {}));
}

void ReadDaemonMetrics(const NowcasterProcess& daemon, LoadReport* report) {
  absl::StatusOr<std::string> m = daemon.Metrics();
  if (!m.ok()) {
    report->exit_problem = absl::StrCat("cannot read /metrics: ", m.status().ToString());
    return;
  }
  const std::string requests = "nino_nowcaster_requests_total";
  report->server_predict_ok = SumMetric(*m, requests, {"method=\"Predict\"", "code=\"OK\""});
  report->server_putstate_ok = SumMetric(*m, requests, {"method=\"PutState\"", "code=\"OK\""});
  report->server_register_ok = SumMetric(*m, requests, {"method=\"RegisterJob\"", "code=\"OK\""});
  report->server_errors = SumMetric(*m, "nino_nowcaster_errors_total", {});
  report->server_nowcasts = SumMetric(*m, "nino_nowcaster_nowcast_seconds_count", {});
  report->server_nowcast_seconds = SumMetric(*m, "nino_nowcaster_nowcast_seconds_sum", {});
}

void SummarizeReport(LoadReport* r) {
  std::map<std::string, std::vector<double>> warm, first;
  int64_t bytes = 0;
  r->all_bitwise = true;
  for (const JobResult& j : r->jobs) {
    r->total_verified += j.steps_verified;
    r->total_mismatches += j.mismatches;
    r->total_crossed += j.crossed;
    for (const auto& [code, n] : j.errors) r->total_errors += n;
    r->max_abs_diff = std::max(r->max_abs_diff, j.max_abs_diff);
    r->all_bitwise = r->all_bitwise && j.steps_bitwise == j.steps_verified && j.mismatches == 0;
    bytes += 4 * j.num_params * j.uploads;
    for (const std::string& key : {j.kind, std::string("all")}) {
      warm[key].insert(warm[key].end(), j.step_s.begin(), j.step_s.end());
      if (j.steps_verified > 0 && j.first_step_s > 0) first[key].push_back(j.first_step_s);
    }
  }
  for (auto& [kind, s] : warm) r->latency_by_kind[kind] = Summarize(std::move(s));
  for (auto& [kind, s] : first) r->first_step_by_kind[kind] = Summarize(std::move(s));
  if (r->run_s > 0) {
    r->steps_per_s = r->total_verified / r->run_s;
    r->uploaded_mb_per_s = bytes / 1e6 / r->run_s;
  }
}

std::string MiB(int64_t bytes) {
  return bytes < 0 ? std::string("n/a") : absl::StrFormat("%.0f MiB", bytes / 1048576.0);
}

}  // namespace

LatencySummary Summarize(std::vector<double> seconds) {
  LatencySummary s;
  s.count = static_cast<int64_t>(seconds.size());
  if (seconds.empty()) return s;
  std::sort(seconds.begin(), seconds.end());
  auto rank = [&](double q) {  // nearest rank: the smallest value with at least q of them <= it
    const int64_t r = static_cast<int64_t>(std::ceil(q * s.count));
    return seconds[std::clamp<int64_t>(r - 1, 0, s.count - 1)];
  };
  s.p50 = rank(0.50);
  s.p99 = rank(0.99);
  s.max = seconds.back();
  double sum = 0;
  for (double v : seconds) sum += v;
  s.mean = sum / s.count;
  return s;
}

absl::StatusOr<LoadReport> RunLoadTest(const LoadTestOptions& options) {
  if (absl::Status s = Validate(options); !s.ok()) return s;
  LoadReport report;
  report.options = options;
  report.nowcaster_binary =
      options.nowcaster_binary.empty() ? DefaultNowcasterBinary() : options.nowcaster_binary;
  if (report.nowcaster_binary.empty() || access(report.nowcaster_binary.c_str(), X_OK) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("nowcaster binary '", report.nowcaster_binary,
                     "' does not exist or is not executable (build //nowcaster:nino_nowcaster)"));
  }
  report.memory_budget_bytes = options.memory_budget_bytes;
  report.cores = static_cast<int>(std::thread::hardware_concurrency());
  report.cpu_model = CpuModel();
  at::set_num_threads(options.verify_threads > 0 ? options.verify_threads : options.server_threads);

  // The jobs and their expected predictions, before the daemon runs.
  const Clock::time_point prepare0 = Clock::now();
  absl::StatusOr<ResolvedModel> resolved = ResolveModel(options.nino_model, false);
  if (!resolved.ok()) return resolved.status();
  absl::StatusOr<NiNoModel> loaded = LoadModel(*resolved);
  if (!loaded.ok()) return loaded.status();
  auto model = std::make_shared<const NiNoModel>(std::move(*loaded));
  std::vector<LoadJob> jobs;
  for (const auto& [kind, count] : options.jobs) {
    for (int i = 0; i < count; ++i) {
      const uint64_t seed = options.seed + jobs.size();
      absl::StatusOr<LoadJob> job =
          MakeLoadJob(absl::StrCat(kind, "-", i), kind, seed, options.cases, model);
      if (!job.ok()) return job.status();
      jobs.push_back(std::move(*job));
    }
  }
  report.prepare_s = SecondsBetween(prepare0, Clock::now());

  // The daemon.
  std::string work_dir = options.work_dir;
  if (work_dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = absl::StrCat(tmp && *tmp ? tmp : "/tmp", "/nino_load_test_XXXXXX");
    if (mkdtemp(pattern.data()) == nullptr) return absl::InternalError("mkdtemp failed");
    work_dir = pattern;
  }
  std::filesystem::create_directories(work_dir);
  report.nowcaster_log = work_dir + "/nowcaster.log";
  const int queue_length =
      options.queue_length > 0 ? options.queue_length : static_cast<int>(jobs.size());
  absl::StatusOr<std::unique_ptr<NowcasterProcess>> daemon =
      NowcasterProcess::Start(report.nowcaster_binary, DaemonArgs(options, queue_length),
                              report.nowcaster_log, absl::Seconds(120));
  if (!daemon.ok()) return daemon.status();
  report.baseline_rss_bytes = (*daemon)->ResidentBytes();
  report.loadavg_before = ReadFirstLine("/proc/loadavg");

  // The jobs, all at once.
  Shared shared;
  shared.jobs = &jobs;
  shared.options = &options;
  shared.address = absl::StrCat("127.0.0.1:", (*daemon)->port());
  report.jobs.resize(jobs.size());
  std::vector<Clock::time_point> finished(jobs.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < jobs.size(); ++i) {
    threads.emplace_back(RunJob, static_cast<int>(i), &shared, &report.jobs[i], &finished[i]);
  }
  shared.start = Clock::now();
  shared.end_of_starts = shared.start + absl::ToChronoNanoseconds(options.duration);
  shared.go.Notify();
  // Sample the daemon while the jobs run.
  while (shared.done.load() < static_cast<int>(jobs.size())) {
    SampleDaemon(**daemon, &report);
    shared.all_done.WaitForNotificationWithTimeout(absl::Milliseconds(500));
  }
  for (std::thread& t : threads) t.join();
  report.run_s = SecondsBetween(shared.start, *std::max_element(finished.begin(), finished.end()));

  report.peak_rss_bytes = (*daemon)->PeakResidentBytes();
  report.end_rss_bytes = (*daemon)->ResidentBytes();
  report.loadavg_after = ReadFirstLine("/proc/loadavg");
  ReadDaemonMetrics(**daemon, &report);
  const absl::Status stopped = (*daemon)->Stop(absl::Seconds(30));
  report.clean_exit = stopped.ok();
  if (!stopped.ok()) {
    absl::StrAppend(&report.exit_problem, report.exit_problem.empty() ? "" : "; ",
                    stopped.ToString());
  }
  report.client_peak_rss_bytes = OwnPeakRssBytes();
  SummarizeReport(&report);
  return report;
}

bool LoadReport::Clean() const { return Problems().empty(); }

std::string LoadReport::Problems() const {
  std::vector<std::string> p;
  int64_t started = 0, uploads = 0;
  for (const JobResult& j : jobs) {
    started += j.steps_started;
    uploads += j.uploads;
    if (j.steps_started == 0) p.push_back(absl::StrCat(j.name, ": no NiNo step ran"));
    if (j.steps_verified != j.steps_started) {
      p.push_back(absl::StrCat(j.name, ": ", j.steps_verified, " of ", j.steps_started,
                               " NiNo steps verified (", j.mismatches, " mismatches, ", j.crossed,
                               " crossed); first: ", j.first_problem));
    }
    if (j.registrations != 1 || j.register_failures != 0 || j.upload_failures != 0 ||
        j.uploads_dropped != 0 || j.context_resends != 0 || j.failovers != 0 ||
        j.uploads != 5 * j.steps_started || j.predictions != j.steps_started) {
      p.push_back(absl::StrCat(
          j.name, ": client counters: ", j.registrations, " registrations (", j.register_failures,
          " failed), ", j.uploads, " uploads for ", j.steps_started, " NiNo steps (",
          j.upload_failures, " failed, ", j.uploads_dropped, " dropped), ", j.context_resends,
          " context resends, ", j.failovers, " failovers, ", j.predictions, " predictions"));
    }
  }
  if (server_predict_ok < 0) {
    p.push_back("the daemon's /metrics could not be read");
  } else {
    if (server_predict_ok != started || server_putstate_ok != uploads ||
        server_register_ok != static_cast<double>(jobs.size()) || server_errors != 0 ||
        server_nowcasts != started) {
      p.push_back(absl::StrCat("the daemon counted ", server_predict_ok, " Predict, ",
                               server_putstate_ok, " PutState, ", server_register_ok,
                               " RegisterJob OK, ", server_errors, " failed calls and ",
                               server_nowcasts, " nowcasts; the clients made ", started,
                               " NiNo steps, ", uploads, " uploads, ", jobs.size(), " jobs"));
    }
  }
  if (!clean_exit) p.push_back(absl::StrCat("the daemon did not stop cleanly: ", exit_problem));
  return absl::StrJoin(p, "\n");
}

std::string FormatReport(const LoadReport& r) {
  std::ostringstream out;
  const LoadTestOptions& o = r.options;
  std::vector<std::string> mix;
  for (const auto& [kind, count] : o.jobs) mix.push_back(absl::StrCat(count, " x ", kind));
  out << absl::StrFormat(
      "nowcaster load test: %s (%d jobs), %.0f s of NiNo periods, model '%s', daemon %d LibTorch "
      "thread(s) x %d worker(s), queue %d, budget %s; in-process predictions on %d thread(s)\n",
      absl::StrJoin(mix, " + "), r.jobs.size(), absl::ToDoubleSeconds(o.duration), o.nino_model,
      o.server_threads, o.workers,
      o.queue_length > 0 ? o.queue_length : static_cast<int>(r.jobs.size()),
      MiB(r.memory_budget_bytes), o.verify_threads > 0 ? o.verify_threads : o.server_threads);
  out << absl::StrFormat("machine: %s, %d cores; /proc/loadavg before: %s; after: %s\n",
                         r.cpu_model, r.cores, r.loadavg_before, r.loadavg_after);
  out << absl::StrFormat(
      "run %.1f s (jobs and expected predictions prepared in %.1f s): %d NiNo steps verified "
      "(%.2f/s), %d mismatches (%d crossed), %d errors; snapshots uploaded %.1f MB/s\n",
      r.run_s, r.prepare_s, r.total_verified, r.steps_per_s, r.total_mismatches, r.total_crossed,
      r.total_errors, r.uploaded_mb_per_s);
  out << absl::StrFormat("predictions vs in-process: %s, max |diff| %.3g (tolerance %s)\n",
                         r.all_bitwise ? "all bit-for-bit equal" : "not all bitwise equal",
                         r.max_abs_diff,
                         o.tolerance > 0 ? absl::StrCat(o.tolerance) : std::string("bitwise"));
  out << "\n| kind | jobs | parameters | in-process step s | NiNo steps | steps/s | first period s "
         "(median) | p50 s | p99 s | max s |\n|---|---|---|---|---|---|---|---|---|---|\n";
  std::map<std::string, std::pair<int, int64_t>> per_kind;  // jobs, steps
  std::map<std::string, int64_t> params;
  std::map<std::string, double> inprocess_s;  // mean over the kind's jobs
  for (const JobResult& j : r.jobs) {
    for (const std::string& key : {j.kind, std::string("all")}) {
      per_kind[key].first += 1;
      per_kind[key].second += j.steps_verified;
    }
    params[j.kind] = j.num_params;
    inprocess_s[j.kind] += j.inprocess_step_s;
  }
  for (const auto& [kind, lat] : r.latency_by_kind) {
    const auto first = r.first_step_by_kind.find(kind);
    const bool all = kind == "all";
    out << absl::StrFormat(
        "| %s | %d | %s | %s | %d | %.2f | %.3f | %.3f | %.3f | %.3f |\n", kind,
        per_kind[kind].first, all ? std::string("-") : absl::StrCat(params[kind]),
        all ? std::string("-") : absl::StrFormat("%.4f", inprocess_s[kind] / per_kind[kind].first),
        per_kind[kind].second, r.run_s > 0 ? per_kind[kind].second / r.run_s : 0,
        first == r.first_step_by_kind.end() ? 0.0 : first->second.p50, lat.p50, lat.p99, lat.max);
  }
  out << "\n| job | steps | steps/s | verified | bitwise | mismatches | errors | first s | p50 s | "
         "p99 s | uploads | upload wait s |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const JobResult& j : r.jobs) {
    std::vector<std::string> errors;
    for (const auto& [code, n] : j.errors) errors.push_back(absl::StrCat(code, " ", n));
    const LatencySummary lat = Summarize(j.step_s);
    out << absl::StrFormat(
        "| %s | %d | %.2f | %d | %d | %d | %s | %.3f | %.3f | %.3f | %d | %.1f |\n", j.name,
        j.steps_started, r.run_s > 0 ? j.steps_verified / r.run_s : 0.0, j.steps_verified,
        j.steps_bitwise, j.mismatches, errors.empty() ? "0" : absl::StrJoin(errors, ", "),
        j.first_step_s, lat.p50, lat.p99, j.uploads, j.upload_wait_s);
  }
  out << absl::StrFormat(
      "\nnowcaster %s (log %s): peak RSS %s (VmHWM), %s after start-up, %s at the end; "
      "budget %s, at most %s of it reserved by the open jobs; longest Predict queue %.0f\n",
      r.nowcaster_binary, r.nowcaster_log, MiB(r.peak_rss_bytes), MiB(r.baseline_rss_bytes),
      MiB(r.end_rss_bytes), MiB(r.memory_budget_bytes),
      MiB(static_cast<int64_t>(r.max_reserved_bytes)), r.max_queue_depth);
  out << absl::StrFormat(
      "its /metrics: %.0f Predict OK, %.0f PutState OK, %.0f RegisterJob OK, %.0f failed calls; "
      "%.0f nowcasts, %.1f s on workers (%.3f s each, %.0f%% of %d workers x run); SIGTERM: %s\n",
      r.server_predict_ok, r.server_putstate_ok, r.server_register_ok, r.server_errors,
      r.server_nowcasts, r.server_nowcast_seconds,
      r.server_nowcasts > 0 ? r.server_nowcast_seconds / r.server_nowcasts : 0.0,
      r.run_s > 0 ? 100.0 * r.server_nowcast_seconds / (r.run_s * o.workers) : 0.0, o.workers,
      r.clean_exit ? "exit 0" : r.exit_problem);
  out << absl::StrFormat("this process: peak RSS %s\n", MiB(r.client_peak_rss_bytes));
  const std::string problems = r.Problems();
  out << (problems.empty() ? std::string("verdict: CLEAN (nothing lost, nothing crossed)\n")
                           : absl::StrCat("verdict: PROBLEMS\n", problems, "\n"));
  return out.str();
}

std::string ReportJson(const LoadReport& r) {
  using nlohmann::json;
  const LoadTestOptions& o = r.options;
  json j;
  json mix = json::object();
  for (const auto& [kind, count] : o.jobs) mix[kind] = count;
  j["jobs_mix"] = mix;
  j["duration_s"] = absl::ToDoubleSeconds(o.duration);
  j["nino_model"] = o.nino_model;
  j["server_threads"] = o.server_threads;
  j["workers"] = o.workers;
  j["queue_length"] = o.queue_length > 0 ? o.queue_length : static_cast<int>(r.jobs.size());
  j["verify_threads"] = o.verify_threads > 0 ? o.verify_threads : o.server_threads;
  j["tolerance"] = o.tolerance;
  j["run_s"] = r.run_s;
  j["prepare_s"] = r.prepare_s;
  j["verified"] = r.total_verified;
  j["mismatches"] = r.total_mismatches;
  j["crossed"] = r.total_crossed;
  j["errors"] = r.total_errors;
  j["steps_per_s"] = r.steps_per_s;
  j["uploaded_mb_per_s"] = r.uploaded_mb_per_s;
  j["all_bitwise"] = r.all_bitwise;
  j["max_abs_diff"] = r.max_abs_diff;
  for (const auto& [kind, lat] : r.latency_by_kind) {
    j["latency_s"][kind] = {{"count", lat.count},
                            {"p50", lat.p50},
                            {"p99", lat.p99},
                            {"max", lat.max},
                            {"mean", lat.mean}};
  }
  for (const auto& [kind, lat] : r.first_step_by_kind) {
    j["first_step_s"][kind] = {{"count", lat.count}, {"p50", lat.p50}, {"max", lat.max}};
  }
  j["nowcaster"] = {
      {"peak_rss_bytes", r.peak_rss_bytes},  {"baseline_rss_bytes", r.baseline_rss_bytes},
      {"end_rss_bytes", r.end_rss_bytes},    {"memory_budget_bytes", r.memory_budget_bytes},
      {"predict_ok", r.server_predict_ok},   {"putstate_ok", r.server_putstate_ok},
      {"register_ok", r.server_register_ok}, {"failed_calls", r.server_errors},
      {"nowcasts", r.server_nowcasts},       {"nowcast_seconds", r.server_nowcast_seconds},
      {"clean_exit", r.clean_exit}};
  j["nowcaster"]["max_reserved_bytes"] = r.max_reserved_bytes;
  j["nowcaster"]["max_queue_depth"] = r.max_queue_depth;
  j["nowcaster"]["max_sampled_rss_bytes"] = r.max_sampled_rss_bytes;
  j["client_peak_rss_bytes"] = r.client_peak_rss_bytes;
  j["loadavg_before"] = r.loadavg_before;
  j["loadavg_after"] = r.loadavg_after;
  j["cores"] = r.cores;
  j["cpu_model"] = r.cpu_model;
  json jobs = json::array();
  for (const JobResult& job : r.jobs) {
    const LatencySummary lat = Summarize(job.step_s);
    jobs.push_back({{"name", job.name},
                    {"kind", job.kind},
                    {"params", job.num_params},
                    {"inprocess_step_s", job.inprocess_step_s},
                    {"steps", job.steps_started},
                    {"verified", job.steps_verified},
                    {"bitwise", job.steps_bitwise},
                    {"mismatches", job.mismatches},
                    {"crossed", job.crossed},
                    {"errors", job.errors},
                    {"first_step_s", job.first_step_s},
                    {"p50_s", lat.p50},
                    {"p99_s", lat.p99},
                    {"uploads", job.uploads},
                    {"context_resends", job.context_resends},
                    {"max_abs_diff", job.max_abs_diff}});
  }
  j["per_job"] = jobs;
  j["clean"] = r.Clean();
  return j.dump();
}

}  // namespace nino::load_test
