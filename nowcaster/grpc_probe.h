// Client-side probes of a gRPC server's standard services, without their generated stubs
// (Debian ships neither health.proto nor reflection.proto): grpc.health.v1.Health/Check and
// grpc.reflection.v1alpha ListServices, spoken through grpc::GenericStub with the few protobuf
// fields they need encoded by hand. Used by tests and probes.
#ifndef NINO_NOWCASTER_GRPC_PROBE_H_
#define NINO_NOWCASTER_GRPC_PROBE_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace nino::nowcaster {

// grpc.health.v1.HealthCheckResponse.ServingStatus.
enum class ServingStatus { kUnknown = 0, kServing = 1, kNotServing = 2, kServiceUnknown = 3 };

// Health/Check for `service` ("" = the whole server). The RPC's error otherwise (NOT_FOUND for
// a service the server does not know, UNAVAILABLE when it is unreachable).
absl::StatusOr<ServingStatus> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                          const std::string& service, absl::Duration timeout);

// Names of the services the server lists through reflection.
absl::StatusOr<std::vector<std::string>> ListServices(const std::shared_ptr<grpc::Channel>& channel,
                                                      absl::Duration timeout);

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_GRPC_PROBE_H_
