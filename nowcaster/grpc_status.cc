#include "nowcaster/grpc_status.h"

#include <string>

namespace nino::nowcaster {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  std::string message(status.message());
  if (message.size() > kMaxStatusMessageBytes) {
    message.resize(kMaxStatusMessageBytes - 3);
    message += "...";
  }
  static_assert(static_cast<int>(absl::StatusCode::kUnauthenticated) ==
                    static_cast<int>(grpc::StatusCode::UNAUTHENTICATED),
                "absl and gRPC status codes share their numbering");
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), message);
}

}  // namespace nino::nowcaster
