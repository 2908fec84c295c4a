// A grpc.health.v1 check of a nino_nowcaster made the way its clients connect (plaintext, TLS
// or mutual TLS): what the nino_health_probe binary runs as a Kubernetes exec probe, since the
// kubelet's native gRPC probes cannot verify a server certificate or present a client one.
// Health calls need no bearer token (nowcaster/auth.h), so the probe sends none.
#ifndef NINO_NOWCASTER_HEALTH_PROBE_H_
#define NINO_NOWCASTER_HEALTH_PROBE_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nowcaster/grpc_probe.h"

namespace nino::nowcaster {

struct HealthProbeOptions {
  std::string address = "127.0.0.1:50051";  // host:port of the daemon
  // "" (the whole server), "nino.v1.Nowcaster" (readiness) or "liveness".
  std::string service;
  absl::Duration timeout = absl::Seconds(2);  // connection, handshake and the call
  // PEM CA bundle that verifies the server's certificate; empty: plaintext.
  std::string tls_ca_file;
  // PEM client certificate chain and key for a daemon with --tls_client_ca: both or neither,
  // and only with tls_ca_file.
  std::string tls_cert_file;
  std::string tls_key_file;
  // The name the server certificate must carry instead of the address's host (a probe that
  // connects to 127.0.0.1 inside the pod checks the Service name the certificate was made for).
  std::string tls_server_name;
};

// A channel to options.address with the options' credentials. INVALID_ARGUMENT naming the
// flag (--tls_ca, --tls_cert, --tls_key, --tls_server_name) and path of a file that cannot be
// read or is not PEM, a certificate without its key, or a certificate or server name without
// --tls_ca. Connects lazily (nothing is sent yet).
absl::StatusOr<std::shared_ptr<grpc::Channel>> HealthProbeChannel(
    const HealthProbeOptions& options);

// One Health/Check of options.service within options.timeout. The errors of
// HealthProbeChannel; UNAVAILABLE or DEADLINE_EXCEEDED when the daemon cannot be reached or the
// TLS handshake fails (wrong CA, no client certificate under mutual TLS, a name the certificate
// does not carry, plaintext against TLS); NOT_FOUND for a service the daemon does not know.
absl::StatusOr<ServingStatus> ProbeHealth(const HealthProbeOptions& options);

// "UNKNOWN", "SERVING", "NOT_SERVING" or "SERVICE_UNKNOWN".
const char* ServingStatusName(ServingStatus status);

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_HEALTH_PROBE_H_
