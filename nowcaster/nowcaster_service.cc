#include "nowcaster/nowcaster_service.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <chrono>
#include <memory>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/nino/nowcast_engine.h"
#include "common/nino/schedule.h"
#include "nowcaster/grpc_status.h"
#include "nowcaster/job_footprint.h"
#include "nowcaster/job_spec.h"
#include "nowcaster/log.h"
#include "nowcaster/token.h"
#include "proto/wire.h"

namespace nino::nowcaster {
namespace {

#define NOWCASTER_RETURN_IF_ERROR(expr) \
  do {                                  \
    absl::Status status_ = (expr);      \
    if (!status_.ok()) return status_;  \
  } while (0)

// Runs `fn` (returning absl::Status) with LibTorch and standard exceptions turned into INTERNAL.
template <typename Fn>
absl::Status Guarded(absl::string_view what, Fn&& fn) {
  try {
    return fn();
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat(what, ": LibTorch error: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what()));
  }
}

// Gives the heap memory freed by a graph build or a nowcast back to the kernel. The process
// keeps up to 1 GiB of free heap per malloc arena (runtime::TuneAllocatorForTensors), and every
// worker and the builder thread have their own arena: without this, the resident memory would
// follow each thread's high-water mark instead of the jobs' reservations. Costs milliseconds,
// once per build or nowcast (which take far longer).
void ReturnFreedHeap() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

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

// Aborts a job's admitted upload unless it was committed, returning its buffer to the job.
class UploadGuard {
 public:
  UploadGuard(Job* job, torch::Tensor* buffer) : job_(job), buffer_(buffer) {}
  ~UploadGuard() {
    if (job_ != nullptr) job_->AbortUpload(std::move(*buffer_));
  }
  void Disarm() { job_ = nullptr; }

 private:
  Job* job_;
  torch::Tensor* buffer_;
};

// The rendezvous of a Predict handler and the worker running its nowcast.
class PendingNowcast {
 public:
  void Finish(absl::StatusOr<torch::Tensor> result, double seconds) {
    {
      absl::MutexLock lock(&mu_);
      result_ = std::move(result);
      seconds_ = seconds;
    }
    done_.Notify();
  }
  // The handler gave up (client gone, deadline): a task not yet started skips the nowcast.
  void Abandon() {
    absl::MutexLock lock(&mu_);
    abandoned_ = true;
  }
  bool abandoned() const {
    absl::MutexLock lock(&mu_);
    return abandoned_;
  }
  bool WaitFor(absl::Duration d) const { return done_.WaitForNotificationWithTimeout(d); }
  // After WaitFor returned true.
  absl::StatusOr<torch::Tensor> TakeResult() {
    absl::MutexLock lock(&mu_);
    return std::move(result_);
  }
  double seconds() const {
    absl::MutexLock lock(&mu_);
    return seconds_;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Notification done_;
  bool abandoned_ ABSL_GUARDED_BY(mu_) = false;
  absl::StatusOr<torch::Tensor> result_ ABSL_GUARDED_BY(mu_) = absl::UnknownError("not run");
  double seconds_ ABSL_GUARDED_BY(mu_) = 0;
};

bool Expired(std::chrono::system_clock::time_point deadline) {
  return std::chrono::system_clock::now() >= deadline;
}

}  // namespace

NowcasterService::NowcasterService(const NowcasterOptions& options, torch::Device device,
                                   const ModelStore* models, NowcasterMetrics* metrics,
                                   Authenticator auth)
    : options_(options),
      device_(device),
      models_(models),
      metrics_(metrics),
      auth_(std::move(auth)),
      budget_(options.memory_budget_bytes),
      queue_(options.workers, options.queue_length,
             [metrics](int depth) { metrics->SetQueueDepth(depth); }),
      builder_(1, options.max_pending_builds) {
  // PutState is the second method of nino.v1.Nowcaster (nowcaster.proto); the generated
  // protobuf handler is replaced by the zero-copy one. gRPC serves a replaced handler as a
  // bidirectional stream; the client-streaming contract (chunks in, one reply) is unchanged.
  constexpr int kPutStateMethodIndex = 1;
  MarkMethodStreamed(
      kPutStateMethodIndex,
      new grpc::internal::BidiStreamingHandler<NowcasterService, wire::ReceivedStateChunk,
                                               v1::PutStateResponse>(
          [](NowcasterService* service, grpc::ServerContext* context, PutStateStream* stream) {
            return service->PutStateZeroCopy(context, stream);
          },
          this));
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

absl::StatusOr<std::shared_ptr<Job>> NowcasterService::FindJob(const grpc::ServerContext& context,
                                                               absl::string_view job_id,
                                                               absl::string_view token) const {
  absl::StatusOr<Principal> caller = auth_.Authenticate(context);
  if (!caller.ok()) return caller.status();
  absl::StatusOr<std::shared_ptr<Job>> job = jobs_.Find(job_id, token);
  if (!job.ok()) return job.status();
  NOWCASTER_RETURN_IF_ERROR(auth_.CheckOwner(*caller, (*job)->spec().principal, job_id));
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
  const absl::Time deadline = context->deadline() == std::chrono::system_clock::time_point::max()
                                  ? absl::InfiniteFuture()
                                  : absl::FromChrono(context->deadline());
  absl::StatusOr<Principal> caller = auth_.Authenticate(*context);
  if (!caller.ok()) return Reply("RegisterJob", caller.status());
  return Reply("RegisterJob", Guarded("RegisterJob", [&] {
                 return DoRegisterJob(*request, *caller, deadline, response);
               }));
}

absl::Status NowcasterService::DoRegisterJob(const v1::RegisterJobRequest& request,
                                             const Principal& caller, absl::Time deadline,
                                             v1::RegisterJobResponse* response) {
  const std::string model_name =
      request.nino_model().empty() ? models_->default_entry().name : request.nino_model();
  const ModelStore::Entry* model = models_->Find(model_name);
  if (model == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "nino_model '", model_name, "' is not served here (served: ", models_->Names(), ")"));
  }
  absl::StatusOr<JobSpec> spec = ValidateJobRequest(request, model_name, model->model->config());
  if (!spec.ok()) return spec.status();
  spec->principal = caller.name;
  if (jobs_.Contains(spec->job_id)) {
    return absl::AlreadyExistsError(absl::StrCat("job ", spec->job_id, " is already registered"));
  }
  NowcastEngineOptions engine_options;
  engine_options.device = device_;
  engine_options.lpe.sign_seed = spec->lpe_seed;
  NOWCASTER_RETURN_IF_ERROR(ApplyTuning(spec->tuning, model->model->config(), &engine_options));
  // The whole footprint, estimated from the layout before anything is built, is reserved now.
  absl::StatusOr<JobFootprint> footprint =
      EstimateJobFootprint(*spec, model->model->config(), engine_options);
  if (!footprint.ok()) return footprint.status();
  const int64_t reservation = footprint->total_bytes();
  NOWCASTER_RETURN_IF_ERROR(budget_.Reserve(
      reservation, absl::StrCat("job ", spec->job_id, " (", footprint->engine.total_edges(),
                                " graph edges; ", footprint->Describe(), ")")));
  ReservationGuard reservation_guard(&budget_, reservation);

  absl::StatusOr<std::string> token = RandomHexToken();
  if (!token.ok()) return token.status();

  auto job = std::make_shared<Job>(*spec, *token, &budget_, footprint->snapshot_bytes,
                                   footprint->engine_bytes());
  reservation_guard.Disarm();  // the job returns it when closed
  NOWCASTER_RETURN_IF_ERROR(jobs_.Add(job));

  // The graph is built by the builder thread; the job accepts snapshots meanwhile.
  std::weak_ptr<Job> weak_job = job;
  std::shared_ptr<const NiNoModel> nino = model->model;
  const std::function<void()>& hook = options_.before_graph_build_for_testing;
  absl::Status submitted = builder_.Submit([weak_job, nino, engine_options, hook](bool run) {
    if (run && hook) hook();
    std::shared_ptr<Job> job = weak_job.lock();
    if (job == nullptr) return;  // closed before its turn
    if (!run) {
      job->SetEngine(absl::AbortedError("the server stopped before the graph was built"));
      return;
    }
    const auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<std::unique_ptr<NowcastEngine>> engine = absl::InternalError("not built");
    try {
      engine = NowcastEngine::Create(nino, job->spec().params, job->spec().graph, engine_options);
    } catch (const c10::Error& e) {
      engine = absl::InternalError(absl::StrCat("LibTorch: ", e.what_without_backtrace()));
    } catch (const std::exception& e) {
      engine = absl::InternalError(e.what());
    }
    if (!engine.ok()) {
      const absl::StatusCode code = engine.status().code() == absl::StatusCode::kFailedPrecondition
                                        ? absl::StatusCode::kInvalidArgument
                                        : engine.status().code();
      engine = absl::Status(code, absl::StrCat("params/graph: no NiNo graph for this layout: ",
                                               engine.status().message()));
      LogInfo(absl::StrCat("job ", job->spec().job_id, ": ", engine.status().message()));
    } else {
      LogInfo(absl::StrCat(
          "job ", job->spec().job_id, ": graph of ", (*engine)->total_nodes(), " nodes / ",
          (*engine)->total_edges(), " edges built in ",
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), " s"));
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
  // here, as a synchronous registration would.
  absl::Time wait_until = absl::Now() + absl::Milliseconds(options_.register_wait_ms);
  if (deadline != absl::InfiniteFuture()) {
    wait_until = std::min(wait_until, deadline - absl::Milliseconds(50));
  }
  const absl::Status built = job->WaitForEngine(wait_until);
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

// --- PutState ------------------------------------------------------------------------------

grpc::Status NowcasterService::PutStateZeroCopy(grpc::ServerContext* context,
                                                PutStateStream* stream) {
  v1::PutStateResponse response;
  absl::Status status = Guarded("PutState", [&] { return DoPutState(context, stream, &response); });
  if (status.ok() && !stream->Write(response)) {
    status = absl::CancelledError("the client left before the reply");
  }
  return Reply("PutState", status);
}

absl::Status NowcasterService::DoPutState(grpc::ServerContext* context, PutStateStream* stream,
                                          v1::PutStateResponse* response) {
  wire::ReceivedStateChunk chunk;
  if (!stream->Read(&chunk)) {
    return context->IsCancelled() ? absl::CancelledError("the client cancelled the upload")
                                  : absl::InvalidArgumentError("PutState stream carried no chunk");
  }
  if (!chunk.parse_status().ok()) return chunk.parse_status();
  absl::StatusOr<std::shared_ptr<Job>> found = FindJob(*context, chunk.job_id(), chunk.job_token());
  if (!found.ok()) return found.status();
  Job& job = **found;
  const JobSpec& spec = job.spec();
  const int64_t step = chunk.step();
  if (step < 0) {
    return absl::InvalidArgumentError(absl::StrCat("step: ", step, ", must be >= 0"));
  }
  if (chunk.total_bytes() != spec.state_bytes()) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk 0: total_bytes ", chunk.total_bytes(), ", but job ", spec.job_id,
                     " has ", spec.num_params, " parameters = ", spec.state_bytes(), " bytes"));
  }
  absl::StatusOr<torch::Tensor> buffer = job.BeginUpload(step);
  if (!buffer.ok()) return buffer.status();
  torch::Tensor state = std::move(*buffer);  // a recycled snapshot buffer of the job, or a new one
  UploadGuard upload_guard(&job, &state);

  // The snapshot is assembled directly in its final tensor: no second copy of the vector.
  wire::ChunkAssembler assembler(state.data_ptr<float>(), spec.state_bytes(),
                                 options_.max_chunk_bytes, /*check_finite=*/true);
  const std::string token = chunk.job_token();
  do {
    if (!chunk.parse_status().ok()) {
      return absl::Status(chunk.parse_status().code(),
                          absl::StrCat("chunk ", assembler.received_chunks(), ": ",
                                       chunk.parse_status().message()));
    }
    metrics_->AddBytesIn(chunk.data_size());
    if (!TokensEqual(chunk.job_token(), token)) {
      return absl::PermissionDeniedError(absl::StrCat("chunk ", assembler.received_chunks(),
                                                      ": job_token differs from the stream's"));
    }
    NOWCASTER_RETURN_IF_ERROR(assembler.Add(chunk.fields()));
  } while (stream->Read(&chunk));
  if (context->IsCancelled()) {
    return absl::CancelledError(absl::StrCat("the client cancelled the upload of step ", step));
  }
  NOWCASTER_RETURN_IF_ERROR(assembler.Finish());
  absl::StatusOr<int> held = job.CommitUpload(step, std::move(state), assembler.received_bytes());
  upload_guard.Disarm();  // CommitUpload ended the upload, committed or not
  if (!held.ok()) return held.status();
  response->set_step(step);
  response->set_states_held(*held);
  response->set_bytes_received(assembler.received_bytes());
  return absl::OkStatus();
}

// --- Predict -------------------------------------------------------------------------------

grpc::Status NowcasterService::Predict(grpc::ServerContext* context,
                                       const v1::PredictRequest* request,
                                       grpc::ServerWriter<v1::PredictionChunk>* writer) {
  return Reply("Predict", Guarded("Predict", [&] { return DoPredict(context, *request, writer); }));
}

absl::Status NowcasterService::DoPredict(grpc::ServerContext* context,
                                         const v1::PredictRequest& request,
                                         grpc::ServerWriter<v1::PredictionChunk>* writer) {
  absl::StatusOr<std::shared_ptr<Job>> found =
      FindJob(*context, request.job_id(), request.job_token());
  if (!found.ok()) return found.status();
  std::shared_ptr<Job> job = std::move(*found);
  const JobSpec& spec = job->spec();
  if (request.step() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("step: ", request.step(), ", must be >= 0"));
  }
  const int k =
      request.k() == 0 ? HorizonAt(spec.k_schedule, request.step(), spec.period) : request.k();
  if (k < 1 || k > spec.seq_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("k: ", request.k(), ", expected 1..", spec.seq_len, " (0 = the schedule)"));
  }
  if (request.max_chunk_bytes() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_chunk_bytes: ", request.max_chunk_bytes(),
                                                   ", expected >= 0 (0 = server default)"));
  }
  const int64_t chunk_bytes = std::min(options_.max_chunk_bytes, request.max_chunk_bytes() == 0
                                                                     ? kDefaultPredictChunkBytes
                                                                     : request.max_chunk_bytes());
  absl::StatusOr<Job::Context> nowcast_context = job->TakeContext(request.step());
  if (!nowcast_context.ok()) return nowcast_context.status();

  const std::chrono::system_clock::time_point deadline = context->deadline();
  // A graph still being built (large models, just registered): wait for it within the deadline.
  for (;;) {
    const absl::Status built = job->WaitForEngine(absl::Now() + absl::Milliseconds(20));
    if (built.ok()) break;
    if (built.code() != absl::StatusCode::kDeadlineExceeded) {
      return absl::FailedPreconditionError(
          absl::StrCat("job ", spec.job_id, ": ", built.message()));
    }
    if (context->IsCancelled()) return absl::CancelledError("the client cancelled the call");
    if (Expired(deadline)) {
      return absl::DeadlineExceededError(absl::StrCat(
          "the deadline passed while the NiNo graph of job ", spec.job_id, " was being built"));
    }
  }
  auto pending = std::make_shared<PendingNowcast>();
  NowcasterMetrics* metrics = metrics_;
  const std::function<void()>& hook = options_.before_nowcast_for_testing;
  NOWCASTER_RETURN_IF_ERROR(queue_.Submit([job, states = nowcast_context->states, k, pending,
                                           deadline, metrics, hook](bool run) {
    if (!run) {
      pending->Finish(absl::UnavailableError("the server stopped before the nowcast ran"), 0);
      return;
    }
    if (hook) hook();
    if (pending->abandoned()) {
      pending->Finish(absl::CancelledError("abandoned before the nowcast ran"), 0);
      return;
    }
    if (Expired(deadline)) {
      pending->Finish(
          absl::DeadlineExceededError("the request's deadline passed while it waited for a worker"),
          0);
      return;
    }
    const auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<torch::Tensor> result = job->Nowcast(states, k);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    metrics->ObserveNowcastSeconds(seconds);
    pending->Finish(std::move(result), seconds);
    ReturnFreedHeap();  // the nowcast's chunk temporaries
  }));

  while (!pending->WaitFor(absl::Milliseconds(20))) {
    if (context->IsCancelled() || Expired(deadline)) {
      pending->Abandon();
      return Expired(deadline)
                 ? absl::DeadlineExceededError("the deadline passed before the nowcast finished")
                 : absl::CancelledError("the client cancelled the call");
    }
  }
  absl::StatusOr<torch::Tensor> prediction = pending->TakeResult();
  if (!prediction.ok()) return prediction.status();
  const torch::Tensor flat = prediction->to(torch::kCPU, torch::kFloat32).contiguous();
  const absl::string_view payload(reinterpret_cast<const char*>(flat.data_ptr<float>()),
                                  static_cast<size_t>(flat.numel()) * sizeof(float));
  absl::StatusOr<std::vector<wire::ChunkSpan>> spans =
      wire::PlanChunks(static_cast<int64_t>(payload.size()), chunk_bytes);
  if (!spans.ok()) return spans.status();
  for (const wire::ChunkSpan& span : *spans) {
    v1::PredictionChunk chunk =
        wire::MakePredictionChunk(spec.job_id, request.step(), k, payload, span);
    if (span.index == 0) chunk.set_nowcast_seconds(pending->seconds());
    if (!writer->Write(chunk)) {
      return absl::CancelledError(absl::StrCat("the client stopped reading after ", span.index,
                                               " of ", spans->size(), " chunks"));
    }
    metrics_->AddBytesOut(span.size_bytes);
  }
  job->FinishPrediction(nowcast_context->last_seq, static_cast<int64_t>(payload.size()));
  return absl::OkStatus();
}

// --- CloseJob, GetJob, ListJobs ------------------------------------------------------------

grpc::Status NowcasterService::CloseJob(grpc::ServerContext* context, const v1::JobRef* request,
                                        v1::CloseJobResponse* /*response*/) {
  return Reply("CloseJob", Guarded("CloseJob", [&] {
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
  return Reply("GetJob", Guarded("GetJob", [&] {
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
  return Reply("ListJobs", Guarded("ListJobs", [&] {
                 for (const auto& job : jobs_.List()) *response->add_jobs() = job->Status();
                 return absl::OkStatus();
               }));
}

}  // namespace nino::nowcaster
