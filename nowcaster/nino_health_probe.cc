// nino_health_probe: one grpc.health.v1 check of a nino_nowcaster, over plaintext, TLS or
// mutual TLS; the exec probe of deploy/k8s/overlays/tls (the kubelet's native gRPC probes cannot
// verify a certificate or present one).
//
//   nino_health_probe [--address=127.0.0.1:50051] [--service=liveness|nino.v1.Nowcaster|]
//                     [--tls_ca=PEM [--tls_cert=PEM --tls_key=PEM] [--tls_server_name=NAME]]
//                     [--timeout_ms=2000]
//
// Exit status: 0 SERVING; 1 any other status or the daemon cannot be reached (the reason on
// stderr); 2 bad flags or unreadable credential files.
#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "nowcaster/health_probe.h"

namespace {
const nino::nowcaster::HealthProbeOptions kDefaults;
}  // namespace

ABSL_FLAG(std::string, address, kDefaults.address, "host:port of the nino_nowcaster");
ABSL_FLAG(std::string, service, kDefaults.service,
          "health service: '' (the whole server), 'nino.v1.Nowcaster' (readiness: NOT_SERVING "
          "while draining) or 'liveness' (SERVING until the server stops)");
ABSL_FLAG(int64_t, timeout_ms, absl::ToInt64Milliseconds(kDefaults.timeout),
          "deadline of the connection, TLS handshake and check");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA bundle that verifies the daemon's certificate (TLS); empty = plaintext");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM client certificate chain for a daemon with --tls_client_ca (with --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "PEM key of --tls_cert");
ABSL_FLAG(std::string, tls_server_name, "",
          "name the daemon's certificate must carry (default: the host of --address)");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "One grpc.health.v1 check of a nino_nowcaster (plaintext, TLS or mutual TLS). Exit 0 when "
      "SERVING, 1 otherwise, 2 for bad flags or files.");
  absl::ParseCommandLine(argc, argv);
  nino::nowcaster::HealthProbeOptions o;
  o.address = absl::GetFlag(FLAGS_address);
  o.service = absl::GetFlag(FLAGS_service);
  o.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  o.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  o.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  o.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  const int64_t timeout_ms = absl::GetFlag(FLAGS_timeout_ms);
  if (timeout_ms <= 0) {
    std::fprintf(stderr, "nino_health_probe: --timeout_ms must be > 0, got %lld\n",
                 static_cast<long long>(timeout_ms));
    return 2;
  }
  o.timeout = absl::Milliseconds(timeout_ms);
  const absl::StatusOr<nino::nowcaster::ServingStatus> status = nino::nowcaster::ProbeHealth(o);
  if (!status.ok()) {
    std::fprintf(stderr, "nino_health_probe: %s service '%s': %s\n", o.address.c_str(),
                 o.service.c_str(), status.status().ToString().c_str());
    return status.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  const bool serving = *status == nino::nowcaster::ServingStatus::kServing;
  std::fprintf(serving ? stdout : stderr, "nino_health_probe: %s service '%s': %s\n",
               o.address.c_str(), o.service.c_str(), nino::nowcaster::ServingStatusName(*status));
  return serving ? 0 : 1;
}
