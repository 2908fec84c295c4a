#include "client/remote_nowcaster.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status/status_macros.h"
#include "nino/v1/nowcaster.grpc.pb.h"
#include "nowcaster/grpc_status.h"
#include "proto/graph_spec_proto.h"
#include "proto/wire.h"

namespace nino::client {
namespace {

// A chunk plus its message header must fit in a stock gRPC message (4 MiB).
constexpr int64_t kMaxUploadChunkBytes = (4 << 20) - (64 << 10);

// The server no longer has what the call needs (it restarted, the job was closed, a snapshot is
// missing): register afresh and resend the context.
// The replica cannot serve the job now (gone, or out of memory): try the next one.
bool FailsOver(const absl::Status& s) {
  return s.code() == absl::StatusCode::kUnavailable ||
         s.code() == absl::StatusCode::kResourceExhausted;
}

bool NeedsResend(const absl::Status& s) {
  return s.code() == absl::StatusCode::kFailedPrecondition ||
         s.code() == absl::StatusCode::kNotFound || s.code() == absl::StatusCode::kPermissionDenied;
}

}  // namespace

std::string MakeJobId(const std::string& task, uint64_t seed) {
  std::string clean;
  for (char c : task) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    clean.push_back(ok ? c : '_');
  }
  return absl::StrCat(clean, "-s", seed, "-p", static_cast<int64_t>(getpid()), "-t",
                      static_cast<int64_t>(std::time(nullptr)));
}

uint64_t ReplicaScore(const std::string& job_id, const std::string& address) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a 64
  for (unsigned char c : absl::StrCat(job_id, "|", address)) {
    h ^= c;
    h *= 1099511628211ull;
  }
  // MurmurHash3's finalizer: FNV-1a alone barely moves the high bits for a change in the last
  // characters, so sequential ports would keep their listed order for most jobs.
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

std::vector<ReplicaAddress> ReplicaOrder(const std::string& job_id,
                                         std::vector<ReplicaAddress> replicas) {
  std::vector<std::pair<uint64_t, ReplicaAddress>> scored;
  for (ReplicaAddress& r : replicas) {
    const uint64_t score = ReplicaScore(job_id, r.address);
    scored.push_back({score, std::move(r)});
  }
  std::sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second.address < b.second.address;
  });
  std::vector<ReplicaAddress> out;
  for (auto& [score, r] : scored) out.push_back(std::move(r));
  return out;
}

std::vector<std::string> ReplicaOrder(const std::string& job_id, const std::string& addresses) {
  std::vector<std::pair<uint64_t, std::string>> scored;
  for (absl::string_view a : absl::StrSplit(addresses, ',', absl::SkipWhitespace())) {
    const std::string address(absl::StripAsciiWhitespace(a));
    scored.push_back({ReplicaScore(job_id, address), address});
  }
  std::sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  std::vector<std::string> out;
  for (auto& [score, address] : scored) out.push_back(std::move(address));
  return out;
}

RemoteNowcaster::RemoteNowcaster(RemoteNowcasterOptions options)
    : options_(std::move(options)),
      num_params_([this] {
        int64_t n = 0;
        for (const auto& [name, shape] : options_.params) {
          int64_t m = 1;
          for (int64_t d : shape) m *= d;
          n += m;
        }
        return n;
      }()),
      security_(ChannelSecurity::Load(options_.credentials)),
      has_host_names_(HasHostNames(options_.address)) {
  if (!security_.ok()) Log(security_.status().ToString());
  {
    absl::MutexLock lock(&rpc_mu_);
    current_job_id_ = options_.job_id;
    ResolveLocked();
  }
  worker_ = std::thread([this] { UploadLoop(); });
}

void RemoteNowcaster::ResolveLocked() {
  const HostResolver resolve = options_.resolver ? options_.resolver : ResolveHostSystem;
  std::vector<ReplicaAddress> fresh =
      ReplicaOrder(options_.job_id, ExpandReplicas(options_.address, resolve));
  next_resolve_ = absl::Now() + options_.re_resolve_interval;
  if (!replicas_.empty() && fresh == replicas_) return;
  const bool first = replicas_.empty();
  const std::string current = first ? std::string() : replicas_[replica_].address;
  replicas_ = std::move(fresh);
  if (!first) Log(absl::StrCat(options_.address, " now names ", replicas_.size(), " replicas"));
  for (size_t i = 0; i < replicas_.size(); ++i) {
    if (!first && replicas_[i].address == current) {
      replica_ = i;  // the job stays on its replica, which is still listed
      return;
    }
  }
  replica_ = 0;
  token_.clear();  // the job's replica is gone: register on the first of the new order
  held_steps_.clear();
  ConnectLocked();
}

void RemoteNowcaster::MaybeResolveLocked(bool force) {
  if (!has_host_names_) return;
  if (force || (token_.empty() && absl::Now() >= next_resolve_)) ResolveLocked();
}

void RemoteNowcaster::Prepare(grpc::ClientContext* ctx, absl::Time deadline) const {
  ctx->set_deadline(absl::ToChronoTime(deadline));
  if (security_.ok()) security_->Decorate(ctx);
}

void RemoteNowcaster::ConnectLocked() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  args.SetMaxSendMessageSize(16 << 20);
  args.SetInt(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, wire::kHttp2MaxFrameBytes);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, wire::kHttp2LookaheadBytes);
  const std::string address = AddressLocked();
  const std::string host_name = replicas_.empty() ? std::string() : replicas_[replica_].host_name;
  channel_ =
      grpc::CreateCustomChannel(address,
                                security_.ok() ? security_->ChannelCredentials(host_name, &args)
                                               : grpc::InsecureChannelCredentials(),
                                args);
  stub_ = v1::Nowcaster::NewStub(channel_);
}

bool RemoteNowcaster::FailOverLocked(const absl::Status& why, int tries) {
  if (replicas_.size() <= 1 || tries >= static_cast<int>(replicas_.size())) {
    MaybeResolveLocked(/*force=*/true);  // every replica failed: names may resolve to others now
    return false;
  }
  const std::string from = replicas_[replica_].address;
  replica_ = (replica_ + 1) % replicas_.size();
  token_.clear();
  held_steps_.clear();
  ConnectLocked();
  ++stats_.failovers;
  Log(absl::StrCat("job ", current_job_id_, " moves from replica ", from, " to ",
                   replicas_[replica_].address, " (", why.ToString(), ")"));
  return true;
}

std::string RemoteNowcaster::replica() const {
  absl::MutexLock lock(&rpc_mu_);
  return AddressLocked();
}

const std::string& RemoteNowcaster::AddressLocked() const {
  return replicas_.empty() ? options_.address : replicas_[replica_].address;
}

RemoteNowcaster::~RemoteNowcaster() {
  {
    absl::MutexLock lock(&queue_mu_);
    stop_ = true;
  }
  if (worker_.joinable()) worker_.join();
  absl::MutexLock lock(&rpc_mu_);
  if (!token_.empty()) {
    grpc::ClientContext ctx;
    Prepare(&ctx, absl::Now() + absl::Seconds(2));
    v1::JobRef ref;
    ref.set_job_id(current_job_id_);
    ref.set_job_token(token_);
    v1::CloseJobResponse resp;
    (void)stub_->CloseJob(&ctx, ref, &resp);  // best effort: the server may be gone
  }
}

void RemoteNowcaster::Log(const std::string& line) const {
  if (options_.quiet) return;
  std::fprintf(stderr, "nowcaster client: %s\n", line.c_str());
  std::fflush(stderr);
}

std::string RemoteNowcaster::job_id() const {
  absl::MutexLock lock(&rpc_mu_);
  return current_job_id_;
}

RemoteNowcaster::Stats RemoteNowcaster::stats() const {
  Stats s;
  {
    absl::MutexLock lock(&rpc_mu_);
    s = stats_;
  }
  s.prediction_failures += failures_without_rpc_lock_.load();
  absl::MutexLock lock(&queue_mu_);
  s.uploads_dropped = dropped_;
  return s;
}

void RemoteNowcaster::SetNinoStep(int64_t step_idx) {
  absl::MutexLock lock(&queue_mu_);
  nino_step_ = step_idx;
}

void RemoteNowcaster::StateRecorded(int64_t step_idx, const torch::Tensor& flat) {
  torch::Tensor copy;
  {
    absl::MutexLock lock(&queue_mu_);
    if (!free_.empty()) {
      copy = std::move(free_.back());
      free_.pop_back();
    }
  }
  const torch::Tensor src = flat.detach().reshape({-1});
  if (copy.defined() && copy.numel() == src.numel()) {
    copy.copy_(src);  // a recycled buffer: no fresh pages (they fault at ~200 MB/s on some VMs)
  } else {
    copy = src.to(torch::kCPU, torch::kFloat32).clone();
  }
  absl::MutexLock lock(&queue_mu_);
  queue_.push_back({step_idx, std::move(copy)});
  // Never hold more than a NiNo step's worth of copies; Nowcast() resends what is missing.
  while (static_cast<int64_t>(queue_.size()) > options_.ctx) {
    RecycleLocked(std::move(queue_.front().values));
    queue_.pop_front();
    ++dropped_;
  }
}

void RemoteNowcaster::RecycleLocked(torch::Tensor buffer) {
  if (static_cast<int64_t>(free_.size()) < 2) free_.push_back(std::move(buffer));
}

bool RemoteNowcaster::WaitForUploads(absl::Duration timeout) {
  absl::MutexLock lock(&queue_mu_);
  return queue_mu_.AwaitWithTimeout(
      absl::Condition(
          +[](RemoteNowcaster* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->queue_mu_) {
            return self->queue_.empty() && !self->busy_;
          },
          this),
      timeout);
}

void RemoteNowcaster::UploadLoop() {
  for (;;) {
    Pending item;
    {
      absl::MutexLock lock(&queue_mu_);
      queue_mu_.Await(absl::Condition(
          +[](RemoteNowcaster* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->queue_mu_) {
            return self->stop_ || !self->queue_.empty();
          },
          this));
      if (stop_) return;
      item = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
    }
    {
      absl::MutexLock lock(&rpc_mu_);
      const absl::Time deadline = absl::Now() + options_.rpc_timeout;
      absl::Status s = EnsureRegisteredLocked(deadline);
      if (s.ok()) s = UploadLocked(item.step, item.values, deadline);
      if (!s.ok()) {
        if (s.code() == absl::StatusCode::kUnavailable) (void)FailOverLocked(s, 1);
        ++stats_.upload_failures;
        Log(absl::StrCat("upload of the snapshot of step ", item.step, " failed (",
                         stats_.upload_failures,
                         " so far; the NiNo step resends it): ", s.ToString()));
      }
    }
    absl::MutexLock lock(&queue_mu_);
    RecycleLocked(std::move(item.values));
    busy_ = false;
  }
}

absl::Status RemoteNowcaster::EnsureRegisteredLocked(absl::Time deadline) {
  NINO_RETURN_IF_ERROR(security_);
  if (!token_.empty()) return absl::OkStatus();
  MaybeResolveLocked(/*force=*/false);
  absl::Status s = RegisterOnceLocked(deadline);
  for (int tries = 1; !s.ok() && FailsOver(s) && absl::Now() < deadline && FailOverLocked(s, tries);
       ++tries) {
    s = RegisterOnceLocked(deadline);
  }
  return s;
}

absl::Status RemoteNowcaster::RegisterOnceLocked(absl::Time deadline) {
  v1::RegisterJobRequest req;
  req.set_job_id(current_job_id_);
  for (const auto& [name, shape] : options_.params) {
    v1::ParamInfo* p = req.add_params();
    p->set_name(name);
    for (int64_t d : shape) p->add_shape(d);
    p->set_dtype(v1::DTYPE_FLOAT32);
  }
  wire::GraphSpecToProto(options_.graph, req.mutable_graph());  // with a kDescribed description
  req.set_nino_model(options_.nino_model);
  req.set_period(options_.period);
  req.set_ctx(options_.ctx);
  req.set_max_train_steps(options_.max_train_steps);
  req.set_k_decay(options_.k_decay);
  req.set_lpe_seed(options_.lpe_seed);
  v1::NowcastTuning* tuning = req.mutable_tuning();
  tuning->set_edge_sample_ratio(options_.tuning.edge_sample_ratio);
  tuning->set_subgraph(options_.tuning.subgraph);
  tuning->set_bf16_edge_state(options_.tuning.bf16_edge_state);
  tuning->set_bf16_matmul(options_.tuning.bf16_matmul);
  tuning->set_chunk_bytes(options_.tuning.chunk_bytes);
  grpc::ClientContext ctx;
  Prepare(&ctx, std::min(deadline, absl::Now() + options_.rpc_timeout));
  v1::RegisterJobResponse resp;
  absl::Status s = nowcaster::FromGrpcStatus(
      stub_->RegisterJob(&ctx, req, &resp),
      absl::StrCat("RegisterJob ", current_job_id_, " at ", AddressLocked()));
  if (s.ok() && resp.num_params() != num_params_) {
    s = absl::InternalError(absl::StrCat("RegisterJob: the server counts ", resp.num_params(),
                                         " parameters, the trainer ", num_params_));
  }
  if (s.ok() && resp.job_token().empty()) s = absl::InternalError("RegisterJob: empty job_token");
  if (!s.ok()) {
    ++stats_.register_failures;
    Log(absl::StrCat("registration failed (", stats_.register_failures,
                     " so far): ", s.ToString()));
    return s;
  }
  token_ = resp.job_token();
  max_chunk_bytes_ = kMaxUploadChunkBytes;
  if (resp.max_chunk_bytes() > 0)
    max_chunk_bytes_ = std::min(max_chunk_bytes_, resp.max_chunk_bytes());
  held_steps_.clear();
  ++stats_.registrations;
  Log(absl::StrCat("registered job ", current_job_id_, " at ", AddressLocked(), " (",
                   resp.num_params(), " parameters, graph ",
                   resp.graph_ready()
                       ? absl::StrCat(resp.num_nodes(), " nodes / ", resp.num_edges(), " edges")
                       : std::string("being built on the server"),
                   ", model ", options_.nino_model, ")"));
  return absl::OkStatus();
}

absl::Status RemoteNowcaster::UploadLocked(int64_t step, const torch::Tensor& values,
                                           absl::Time deadline) {
  torch::Tensor flat = values.reshape({-1}).to(torch::kCPU, torch::kFloat32).contiguous();
  if (flat.numel() != num_params_) {
    return absl::InvalidArgumentError(absl::StrCat("snapshot of step ", step, " has ", flat.numel(),
                                                   " values, expected ", num_params_));
  }
  absl::Status s = UploadOnceLocked(step, flat, deadline);
  if (s.code() == absl::StatusCode::kDataLoss && absl::Now() < deadline) {
    // The server refused the damaged stream and kept nothing of it (DATA_LOSS is decided there,
    // per chunk): sending the same snapshot again is safe.
    ++stats_.upload_retries;
    Log(absl::StrCat("upload of step ", step, " arrived damaged (", s.ToString(),
                     "); sending it again"));
    s = UploadOnceLocked(step, flat, deadline);
  }
  return s;
}

absl::Status RemoteNowcaster::UploadOnceLocked(int64_t step, const torch::Tensor& flat,
                                               absl::Time deadline) {
  const absl::string_view payload =
      wire::AsBytes(absl::MakeConstSpan(flat.data_ptr<float>(), flat.numel()));
  NINO_ASSIGN_OR_RETURN(const std::vector<wire::ChunkSpan> spans,
                        wire::PlanChunks(static_cast<int64_t>(payload.size()), max_chunk_bytes_));
  grpc::ClientContext ctx;
  Prepare(&ctx, deadline);
  v1::PutStateResponse resp;
  // The generated stub, one chunk message at a time: measured as fast as or faster than the
  // zero-copy frames of proto/chunk_codec.h (docs/BENCHMARKS.md, section 5).
  std::unique_ptr<grpc::ClientWriterInterface<v1::StateChunk>> writer =
      stub_->PutState(&ctx, &resp);
  for (const wire::ChunkSpan& span : spans) {
    v1::StateChunk chunk = wire::MakeStateChunk(current_job_id_, token_, step, payload, span);
    if (options_.before_send_chunk_for_testing) options_.before_send_chunk_for_testing(&chunk);
    if (!writer->Write(chunk)) break;
  }
  writer->WritesDone();
  const grpc::Status sent = writer->Finish();
  absl::Status s = nowcaster::FromGrpcStatus(sent, absl::StrCat("PutState step ", step));
  if (s.ok() &&
      (resp.step() != step || resp.bytes_received() != static_cast<int64_t>(payload.size()))) {
    s = absl::InternalError(absl::StrCat("PutState step ", step, ": the server acknowledged step ",
                                         resp.step(), ", ", resp.bytes_received(), " bytes"));
  }
  if (!s.ok()) {
    if (s.code() == absl::StatusCode::kNotFound ||
        s.code() == absl::StatusCode::kPermissionDenied) {
      token_.clear();  // the server forgot the job (restart): register again next time
    }
    return s;
  }
  held_steps_.insert(step);
  ++stats_.uploads;
  return absl::OkStatus();
}

absl::StatusOr<torch::Tensor> RemoteNowcaster::PredictLocked(int64_t step, int k,
                                                             absl::Time deadline) {
  v1::PredictRequest req;
  req.set_job_id(current_job_id_);
  req.set_job_token(token_);
  req.set_step(step);
  req.set_k(k);
  grpc::ClientContext ctx;
  Prepare(&ctx, deadline);
  std::unique_ptr<grpc::ClientReaderInterface<v1::PredictionChunk>> reader =
      stub_->Predict(&ctx, req);
  torch::Tensor out = torch::empty({num_params_}, torch::kFloat32);
  wire::ChunkAssembler assembler(out.data_ptr<float>(), num_params_ * 4, 0);
  v1::PredictionChunk chunk;
  absl::Status stream = absl::OkStatus();
  while (reader->Read(&chunk)) {
    if (chunk.chunk_index() == 0) stats_.last_server_nowcast_seconds = chunk.nowcast_seconds();
    if (stream.ok()) stream = assembler.Add(chunk);
    if (!stream.ok()) {
      ctx.TryCancel();
      break;
    }
  }
  absl::Status s = nowcaster::FromGrpcStatus(reader->Finish(), absl::StrCat("Predict step ", step));
  if (!stream.ok())
    return absl::Status(stream.code(), absl::StrCat("Predict step ", step, ": ", stream.message()));
  if (!s.ok()) return s;
  if (absl::Status f = assembler.Finish(); !f.ok()) {
    return absl::Status(f.code(), absl::StrCat("Predict step ", step, ": ", f.message()));
  }
  if (assembler.job_id() != current_job_id_ || assembler.step() != step || assembler.k() != k) {
    return absl::InternalError(absl::StrCat(
        "Predict: the server answered job ", assembler.job_id(), " step ", assembler.step(), " k ",
        assembler.k(), " for job ", current_job_id_, " step ", step, " k ", k));
  }
  if (!torch::isfinite(out).all().item<bool>()) {
    return absl::InternalError("Predict: the prediction holds NaN or Inf values");
  }
  held_steps_.clear();  // the server drops the snapshots a delivered prediction used
  return out;
}

absl::StatusOr<torch::Tensor> RemoteNowcaster::NowcastLocked(const torch::Tensor& states, int k,
                                                             int64_t step, absl::Time deadline) {
  const int64_t interval = options_.period / options_.ctx;
  auto state_step = [&](int64_t i) { return step - (options_.ctx - 1 - i) * interval; };
  absl::Status s = EnsureRegisteredLocked(deadline);
  if (s.ok()) {
    // Send what the server lacks (always the newest snapshot, recorded in this very iteration),
    // as long as it comes after everything it holds (the server takes snapshots in step order).
    for (int64_t i = 0; i < options_.ctx && s.ok(); ++i) {
      const int64_t st = state_step(i);
      if (held_steps_.count(st) || st < 0) continue;
      if (!held_steps_.empty() && st <= *held_steps_.rbegin()) continue;
      s = UploadLocked(st, states[i], deadline);
    }
  }
  // A replica that went away mid-call: the job moves to the next one (then the resend below).
  auto fail_over = [&](const absl::Status& e) {
    return e.code() == absl::StatusCode::kUnavailable && FailOverLocked(e, 1);
  };
  if (s.ok()) {
    auto pred = PredictLocked(step, k, deadline);
    if (pred.ok()) return pred;
    s = pred.status();
    if (!NeedsResend(s) && !fail_over(s)) return s;
  } else if (!NeedsResend(s) && s.code() != absl::StatusCode::kInvalidArgument && !fail_over(s)) {
    return s;
  }
  if (absl::Now() >= deadline) return s;
  // The server lacks the context: a fresh job, the whole context uploaded now, one more try.
  ++stats_.context_resends;
  Log(absl::StrCat("the server lacks the context of step ", step, " (", s.ToString(),
                   "); registering afresh and resending ", options_.ctx, " snapshots"));
  if (!token_.empty()) {  // close the old job (best effort) so its memory is freed
    grpc::ClientContext ctx;
    Prepare(&ctx, std::min(deadline, absl::Now() + absl::Seconds(2)));
    v1::JobRef ref;
    ref.set_job_id(current_job_id_);
    ref.set_job_token(token_);
    v1::CloseJobResponse resp;
    (void)stub_->CloseJob(&ctx, ref, &resp);
  }
  token_.clear();
  current_job_id_ = absl::StrCat(options_.job_id, "-r", ++incarnation_);
  if (s = EnsureRegisteredLocked(deadline); !s.ok()) return s;
  for (int64_t i = 0; i < options_.ctx; ++i) {
    if (state_step(i) < 0) return absl::FailedPreconditionError("context before step 0");
    if (s = UploadLocked(state_step(i), states[i], deadline); !s.ok()) return s;
  }
  return PredictLocked(step, k, deadline);
}

absl::StatusOr<torch::Tensor> RemoteNowcaster::Nowcast(const torch::Tensor& states, int k) {
  const absl::Time deadline = absl::Now() + options_.nowcast_timeout;
  if (!states.defined() || states.dim() != 2 || states.size(0) != options_.ctx ||
      states.size(1) != num_params_) {
    return absl::InvalidArgumentError(
        absl::StrCat("states must be [", options_.ctx, ", ", num_params_, "]"));
  }
  int64_t step = -1;
  bool drained = false;
  {
    absl::MutexLock lock(&queue_mu_);
    step = nino_step_;
    // Background uploads first (they hold earlier snapshots of this context).
    drained = queue_mu_.AwaitWithDeadline(
        absl::Condition(
            +[](RemoteNowcaster* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->queue_mu_) {
              return self->queue_.empty() && !self->busy_;
            },
            this),
        deadline);
  }
  if (!drained) {
    // The upload thread may still be inside an RPC: do not wait for it, count without the lock.
    failures_without_rpc_lock_.fetch_add(1);
    Log("nowcast failed: pending snapshot uploads did not finish before the deadline");
    return absl::DeadlineExceededError(
        "nowcaster: pending snapshot uploads did not finish in time");
  }
  if (step < 0) return absl::FailedPreconditionError("nowcaster client: the NiNo step was not set");
  absl::MutexLock lock(&rpc_mu_);
  const torch::Tensor cpu = states.to(torch::kCPU, torch::kFloat32).contiguous();
  absl::StatusOr<torch::Tensor> r = NowcastLocked(cpu, k, step, deadline);
  if (r.ok()) {
    ++stats_.predictions;
  } else {
    ++stats_.prediction_failures;
    Log(absl::StrCat("nowcast of step ", step, " failed (", stats_.prediction_failures,
                     " so far): ", r.status().ToString()));
  }
  return r;
}

}  // namespace nino::client
