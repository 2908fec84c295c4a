#include "nowcaster/nowcaster_service.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/nino/default_model.h"
#include "common/nino/nowcast_engine.h"
#include "common/status/status_macros.h"
#include "common/status/torch_guard.h"
#include "nowcaster/grpc_status.h"
#include "nowcaster/job_footprint.h"
#include "nowcaster/job_spec.h"
#include "nowcaster/log.h"
#include "nowcaster/predict_reactor.h"
#include "nowcaster/put_state_reactor.h"
#include "nowcaster/token.h"

namespace nino::nowcaster {
namespace {

// Returns bytes to the budget unless released to a new owner.
class ReservationGuard {
 public:
  ReservationGuard(MemoryBudget* budget, int64_t bytes) : budget_(budget), bytes_(bytes) {}
  ~ReservationGuard() {
    if (budget_ != nullptr) budget_->Release(bytes_);
  }
  void Disarm() { budget_ = nullptr; }

 private:
  MemoryBudget* budget_;
  int64_t bytes_;
};

}  // namespace

NowcasterService::NowcasterService(const NowcasterOptions& options, torch::Device device,
                                   const ModelStore* models, NowcasterMetrics* metrics,
                                   Authenticator auth, Env* env)
    : options_(options),
      device_(device),
      models_(models),
      metrics_(metrics),
      auth_(std::move(auth)),
      env_(env),
      budget_(options.memory_budget_bytes),
      queue_(
          options.workers, options.queue_length,
          [metrics](int depth) { metrics->SetQueueDepth(depth); },
          [metrics](int busy) { metrics->SetBusyWorkers(busy); }),
      builder_(1, options.max_pending_builds) {
  core_.options = &options_;
  core_.metrics = metrics_;
  core_.queue = &queue_;
  core_.env = env_;
  core_.find_job = [this](const grpc::ServerContextBase& context, absl::string_view job_id,
                          absl::string_view token) { return FindJob(context, job_id, token); };
  core_.predicts_in_flight = &predicts_in_flight_;
}

NowcasterService::~NowcasterService() { StopWorkers(); }

void NowcasterService::StopWorkers() {
  builder_.Stop();
  queue_.Stop();
}

grpc::Status NowcasterService::Reply(absl::string_view method, const absl::Status& status) {
  metrics_->CountRequest(method, status.code());
  return ToGrpcStatus(status);
}

absl::StatusOr<std::shared_ptr<Job>> NowcasterService::FindJob(
    const grpc::ServerContextBase& context, absl::string_view job_id,
    absl::string_view token) const {
  absl::StatusOr<Principal> caller = auth_.Authenticate(context);
  if (!caller.ok()) return caller.status();
  absl::StatusOr<std::shared_ptr<Job>> job = jobs_.Find(job_id, token);
  if (!job.ok()) return job.status();
  NINO_RETURN_IF_ERROR(auth_.CheckOwner(*caller, (*job)->spec().principal, job_id));
  return job;
}

void NowcasterService::UpdateJobGauges() {
  int64_t engine_bytes = 0;
  const std::vector<std::shared_ptr<Job>> jobs = jobs_.List();
  for (const auto& job : jobs) engine_bytes += job->engine_bytes();
  metrics_->SetJobs(static_cast<int64_t>(jobs.size()));
  metrics_->SetReservedBytes(budget_.reserved_bytes());
  metrics_->SetEngineReservedBytes(engine_bytes);
}

// --- RegisterJob ---------------------------------------------------------------------------

grpc::Status NowcasterService::RegisterJob(grpc::ServerContext* context,
                                           const v1::RegisterJobRequest* request,
                                           v1::RegisterJobResponse* response) {
  const absl::Time deadline = ServiceCore::FromCallDeadline(context->deadline());
  absl::StatusOr<Principal> caller = auth_.Authenticate(*context);
  if (!caller.ok()) return Reply("RegisterJob", caller.status());
  return Reply("RegisterJob", GuardTorch("RegisterJob", [&] {
                 return DoRegisterJob(*request, *caller, deadline, response);
               }));
}

absl::Status NowcasterService::DoRegisterJob(const v1::RegisterJobRequest& request,
                                             const Principal& caller, absl::Time deadline,
                                             v1::RegisterJobResponse* response) {
  const std::string& asked =
      request.nino_model().empty() ? models_->default_entry().name : request.nino_model();
  const ModelStore::Entry* model = models_->Find(asked);
  if (model == nullptr) {
    const std::string what = asked == "default"
                                 ? absl::StrCat("'default' (the built-in ", kDefaultModelName, ")")
                                 : absl::StrCat("'", asked, "'");
    return absl::NotFoundError(
        absl::StrCat("nino_model ", what, " is not served here (served: ", models_->Names(), ")"));
  }
  const std::string& model_name = model->name;  // "default" resolved to the built-in's name
  absl::StatusOr<JobSpec> spec = ValidateJobRequest(request, model_name, model->model->config());
  if (!spec.ok()) return spec.status();
  spec->principal = caller.name;
  if (jobs_.Contains(spec->job_id)) {
    return absl::AlreadyExistsError(absl::StrCat("job ", spec->job_id, " is already registered"));
  }
  NowcastEngineOptions engine_options;
  engine_options.device = device_;
  engine_options.lpe.sign_seed = spec->lpe_seed;
  NINO_RETURN_IF_ERROR(ApplyTuning(spec->tuning, model->model->config(), &engine_options));
  // The whole footprint, estimated from the layout before anything is built, is reserved now.
  absl::StatusOr<JobFootprint> footprint =
      EstimateJobFootprint(*spec, model->model->config(), engine_options);
  if (!footprint.ok()) return footprint.status();
  const int64_t reservation = footprint->total_bytes();
  NINO_RETURN_IF_ERROR(budget_.Reserve(
      reservation, absl::StrCat("job ", spec->job_id, " (", footprint->engine.total_edges(),
                                " graph edges; ", footprint->Describe(), ")")));
  ReservationGuard reservation_guard(&budget_, reservation);

  absl::StatusOr<std::string> token = RandomHexToken();
  if (!token.ok()) return token.status();

  auto job = std::make_shared<Job>(*spec, *token, &budget_, footprint->snapshot_bytes,
                                   footprint->engine_bytes());
  reservation_guard.Disarm();  // the job returns it when closed
  NINO_RETURN_IF_ERROR(jobs_.Add(job));

  // The graph is built by the builder thread; the job accepts snapshots meanwhile.
  std::weak_ptr<Job> weak_job = job;
  std::shared_ptr<const NiNoModel> nino = model->model;
  const std::function<void()>& hook = options_.before_graph_build_for_testing;
  Env* env = env_;
  absl::Status submitted = builder_.Submit([weak_job, nino, engine_options, hook, env](bool run) {
    if (run && hook) hook();
    std::shared_ptr<Job> job = weak_job.lock();
    if (job == nullptr) return;  // closed before its turn
    if (!run) {
      job->SetEngine(absl::AbortedError("the server stopped before the graph was built"));
      return;
    }
    const int64_t t0 = env->NowMicros();
    absl::StatusOr<std::unique_ptr<NowcastEngine>> engine =
        GuardTorch("LibTorch", [&]() -> absl::StatusOr<std::unique_ptr<NowcastEngine>> {
          return NowcastEngine::Create(nino, job->spec().params, job->spec().graph, engine_options);
        });
    if (!engine.ok()) {
      engine = absl::Status(
          engine.status().code(),
          absl::StrCat("params/graph: no NiNo graph for this layout: ", engine.status().message()));
      LogInfo(absl::StrCat("job ", job->spec().job_id, ": ", engine.status().message()));
    } else {
      LogInfo(absl::StrCat("job ", job->spec().job_id, ": graph of ", (*engine)->total_nodes(),
                           " nodes / ", (*engine)->total_edges(), " edges built in ",
                           static_cast<double>(env->NowMicros() - t0) * 1e-6, " s"));
    }
    job->SetEngine(std::move(engine));
    ReturnFreedHeap();  // the build's edge lists, triplets and solver memory
  });
  if (!submitted.ok()) {
    (void)jobs_.Remove(spec->job_id, *token);
    return absl::Status(submitted.code(), absl::StrCat("job ", spec->job_id,
                                                       ": graph builder: ", submitted.message()));
  }
  UpdateJobGauges();

  // Wait a little for the build: small graphs (and layouts the graph cannot map) are answered
  // here, as a synchronous registration would. The wait is measured by the Env's clock.
  absl::Duration wait = absl::Milliseconds(options_.register_wait_ms);
  if (deadline != absl::InfiniteFuture()) {
    wait = std::min(wait, deadline - absl::Milliseconds(50) - env_->Now());
  }
  const absl::Status built = job->WaitForEngineFor(std::max(wait, absl::ZeroDuration()));
  if (!built.ok() && built.code() != absl::StatusCode::kDeadlineExceeded) {
    (void)jobs_.Remove(spec->job_id, *token);
    UpdateJobGauges();
    return built;
  }

  response->set_job_token(*token);
  response->set_num_params(spec->num_params);
  response->set_num_nodes(job->num_nodes());
  response->set_num_edges(job->num_edges());
  response->set_graph_ready(built.ok());
  response->set_max_chunk_bytes(options_.max_chunk_bytes);
  for (int k : spec->k_schedule) response->add_k_schedule(k);
  LogInfo(absl::StrCat(
      "registered job ", spec->job_id, ": model ", model_name, ", ", spec->num_params,
      " parameters, reserved ", footprint->Describe(), ", graph ",
      built.ok() ? absl::StrCat(job->num_nodes(), " nodes / ", job->num_edges(), " edges")
                 : "being built"));
  return absl::OkStatus();
}

// --- PutState, Predict (callback API) ------------------------------------------------------

grpc::ServerReadReactor<grpc::ByteBuffer>* NowcasterService::PutState(
    grpc::CallbackServerContext* context, grpc::ByteBuffer* response) {
  return new PutStateReactor(core_, context, response);
}

grpc::ServerWriteReactor<v1::PredictionChunk>* NowcasterService::Predict(
    grpc::CallbackServerContext* context, const v1::PredictRequest* request) {
  return PredictReactor::Start(core_, context, *request);
}

// --- CloseJob, GetJob, ListJobs ------------------------------------------------------------

grpc::Status NowcasterService::CloseJob(grpc::ServerContext* context, const v1::JobRef* request,
                                        v1::CloseJobResponse* /*response*/) {
  return Reply("CloseJob", GuardTorch("CloseJob", [&] {
                 auto owned = FindJob(*context, request->job_id(), request->job_token());
                 if (!owned.ok()) return owned.status();
                 absl::Status status = jobs_.Remove(request->job_id(), request->job_token());
                 if (status.ok()) {
                   UpdateJobGauges();
                   LogInfo(absl::StrCat("closed job ", request->job_id()));
                 }
                 return status;
               }));
}

grpc::Status NowcasterService::GetJob(grpc::ServerContext* context, const v1::JobRef* request,
                                      v1::JobStatus* response) {
  return Reply("GetJob", GuardTorch("GetJob", [&] {
                 absl::StatusOr<std::shared_ptr<Job>> job =
                     FindJob(*context, request->job_id(), request->job_token());
                 if (!job.ok()) return job.status();
                 *response = (*job)->Status();
                 return absl::OkStatus();
               }));
}

grpc::Status NowcasterService::ListJobs(grpc::ServerContext* context,
                                        const v1::ListJobsRequest* /*request*/,
                                        v1::ListJobsResponse* response) {
  if (absl::Status s = auth_.AuthorizeAdmin(*context, "ListJobs"); !s.ok()) {
    return Reply("ListJobs", s);
  }
  return Reply("ListJobs", GuardTorch("ListJobs", [&] {
                 for (const auto& job : jobs_.List()) *response->add_jobs() = job->Status();
                 return absl::OkStatus();
               }));
}

}  // namespace nino::nowcaster
