// The one place where an internal absl::Status becomes the grpc::Status an RPC returns.
#ifndef NINO_NOWCASTER_GRPC_STATUS_H_
#define NINO_NOWCASTER_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace nino::nowcaster {

// Same canonical code (absl and gRPC share the numbering); the message is cut to
// kMaxStatusMessageBytes so a runaway error text cannot exceed the trailer size.
grpc::Status ToGrpcStatus(const absl::Status& status);

inline constexpr size_t kMaxStatusMessageBytes = 2048;

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_GRPC_STATUS_H_
