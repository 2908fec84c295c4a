#include "nowcaster/nowcaster_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/resource_quota.h>

#include <chrono>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nowcaster/auth.h"
#include "nowcaster/exposure.h"
#include "nowcaster/log.h"
#include "nowcaster/secret_file.h"
#include "nowcaster/tls.h"
#include "proto/wire.h"

namespace nino::nowcaster {

NowcasterServer::NowcasterServer(NowcasterOptions options, ModelStore models)
    : options_(std::move(options)), models_(std::move(models)) {}

NowcasterServer::~NowcasterServer() { Shutdown(); }

namespace {

// /metrics' check of the Authorization header; empty (open) without a token file.
absl::StatusOr<MetricsHttpServer::Authorizer> MetricsAuthorizer(const NowcasterOptions& o) {
  if (o.metrics_token_file.empty()) return MetricsHttpServer::Authorizer();
  absl::StatusOr<std::string> token = ReadTokenFile("--metrics_token_file", o.metrics_token_file);
  if (!token.ok()) return token.status();
  auto digest = std::make_shared<const TokenDigest>(*token);
  return MetricsHttpServer::Authorizer([digest](absl::string_view authorization) {
    absl::StatusOr<absl::string_view> presented = BearerToken(authorization);
    return presented.ok() && digest->Matches(*presented);
  });
}

}  // namespace

absl::StatusOr<std::unique_ptr<NowcasterServer>> NowcasterServer::BuildAndStart(
    NowcasterOptions options, Env* env) {
  if (absl::Status s = ValidateOptions(options); !s.ok()) return s;
  absl::StatusOr<std::string> exposure_warning = CheckExposure(options);
  if (!exposure_warning.ok()) return exposure_warning.status();
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      MakeServerCredentials(options);
  if (!credentials.ok()) return credentials.status();
  absl::StatusOr<Authenticator> auth = Authenticator::FromFile(options.auth_tokens_file);
  if (!auth.ok()) return auth.status();
  absl::StatusOr<MetricsHttpServer::Authorizer> metrics_auth = MetricsAuthorizer(options);
  if (!metrics_auth.ok()) return metrics_auth.status();
  absl::StatusOr<torch::Device> device = ParseDevice(options.device);
  if (!device.ok()) return device.status();
  if (options.threads > 0) at::set_num_threads(options.threads);  // process-wide
  absl::StatusOr<ModelStore> models =
      ModelStore::Load(options.models, *device, options.allow_download);
  if (!models.ok()) return models.status();

  std::unique_ptr<NowcasterServer> s(new NowcasterServer(std::move(options), std::move(*models)));
  const NowcasterOptions& o = s->options_;
  const std::string auth_line =
      auth->enabled() ? absl::StrCat("bearer tokens of ", auth->num_principals(),
                                     " principals (--auth_tokens_file)")
                      : std::string("none (no --auth_tokens_file: every call is allowed)");
  s->service_ = std::make_unique<NowcasterService>(o, *device, &s->models_, &s->metrics_,
                                                   std::move(*auth), env);

  // Process-wide gRPC switches; both must precede the builder.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(o.address, *credentials, &s->port_);
  builder.RegisterService(s->service_.get());
  builder.SetMaxReceiveMessageSize(static_cast<int>(o.max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(o.max_message_bytes));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, wire::kHttp2MaxFrameBytes);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, wire::kHttp2LookaheadBytes);
  // Bounds the synchronous pool (the unary methods, reflection). Predict, PutState and health
  // checks run on gRPC's callback threads and hold none while they wait.
  if (o.max_rpc_threads > 0) {
    grpc::ResourceQuota quota("nino_nowcaster");
    quota.SetMaxThreads(o.max_rpc_threads);
    builder.SetResourceQuota(quota);
  }
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    s->service_->StopWorkers();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", o.address));
  }
  grpc::HealthCheckServiceInterface* health = s->server_->GetHealthCheckService();
  health->SetServingStatus("", true);
  health->SetServingStatus(kServiceName, true);
  health->SetServingStatus(kLivenessService, true);

  if (o.metrics_port != 0) {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> http =
        MetricsHttpServer::Start(o.metrics_host, o.metrics_port == kAnyPort ? 0 : o.metrics_port,
                                 s->metrics_.registry(), std::move(*metrics_auth));
    if (!http.ok()) {
      s->Shutdown();
      return http.status();
    }
    s->metrics_http_ = std::move(*http);
    s->metrics_port_ = s->metrics_http_->port();
  }

  std::vector<std::string> model_lines;
  for (const ModelStore::Entry& e : s->models_.entries()) {
    model_lines.push_back(absl::StrCat(e.name, "=", e.path, " (", e.source, ")"));
  }
  const std::string host = o.address.substr(0, o.address.rfind(':'));
  LogInfo(absl::StrCat("nino_nowcaster listening on ", host, ":", s->port_,
                       " (grpc.health.v1, reflection, nino.v1.Nowcaster), ", TransportName(o)));
  LogInfo(absl::StrCat("authentication: ", auth_line));
  if (!exposure_warning->empty()) LogError(*exposure_warning);
  LogInfo(
      s->metrics_port_ != 0
          ? absl::StrCat("metrics on http://", o.metrics_host, ":", s->metrics_port_, "/metrics",
                         o.metrics_token_file.empty() ? " (open)"
                                                      : " (bearer token of --metrics_token_file)")
          : std::string("metrics off (--metrics_port=0)"));
  LogInfo(absl::StrCat("models: ", absl::StrJoin(model_lines, ", ")));
  LogInfo(absl::StrCat("device ", device->str(), ", ", o.workers, " workers, LibTorch threads ",
                       at::get_num_threads(), ", queue length ", o.queue_length, ", memory budget ",
                       o.memory_budget_bytes, " bytes, max chunk ", o.max_chunk_bytes,
                       " bytes, unary RPC threads <= ",
                       o.max_rpc_threads > 0 ? absl::StrCat(o.max_rpc_threads) : "gRPC's default",
                       " (Predict and PutState hold none while waiting)"));
  return s;
}

void NowcasterServer::SetNotServing() {
  if (server_ == nullptr) return;
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  health->SetServingStatus("", false);
  health->SetServingStatus(kServiceName, false);
}

void NowcasterServer::Shutdown() {
  absl::MutexLock lock(&shutdown_mu_);
  if (shut_down_) return;
  shut_down_ = true;
  if (server_ != nullptr) {
    LogInfo("shutting down: readiness NOT_SERVING (liveness stays SERVING)");
    SetNotServing();
    if (options_.lame_duck_ms > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(options_.lame_duck_ms));
    }
    LogInfo(
        absl::StrCat("draining in-flight calls (up to ", options_.shutdown_deadline_ms, " ms)"));
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(options_.shutdown_deadline_ms));
  }
  if (service_ != nullptr) service_->StopWorkers();
  if (metrics_http_ != nullptr) metrics_http_->Stop();
  LogInfo("stopped");
  done_.Notify();
}

void NowcasterServer::Wait() { done_.WaitForNotification(); }

}  // namespace nino::nowcaster
