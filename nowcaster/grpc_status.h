// The one place where absl::Status and grpc::Status are converted, both ways: the server turns
// its internal Status into the grpc::Status an RPC returns, clients (//client, the probes in
// grpc_probe.h, the PutState codec in //proto:chunk_codec, the tools) turn a call's grpc::Status
// into an absl::Status. The code is never remapped here: absl and gRPC share the canonical
// numbering, and each code is chosen where the error arises (STYLE.md).
#ifndef NINO_NOWCASTER_GRPC_STATUS_H_
#define NINO_NOWCASTER_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace nino::nowcaster {

// Same canonical code; the message is cut to kMaxStatusMessageBytes so a runaway error text
// cannot exceed the trailer size.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Same canonical code; the message is "<context>: <grpc message>" ("<grpc message>" when
// `context` is empty), so a client's error names the call that failed. OK stays OK.
absl::Status FromGrpcStatus(const grpc::Status& status, absl::string_view context = "");

inline constexpr size_t kMaxStatusMessageBytes = 2048;

}  // namespace nino::nowcaster

#endif  // NINO_NOWCASTER_GRPC_STATUS_H_
