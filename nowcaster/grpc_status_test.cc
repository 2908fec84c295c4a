// The absl <-> gRPC status conversion: the same canonical code both ways for every code, a
// bounded message towards the wire, the call named on the way back.
#include "nowcaster/grpc_status.h"

#include <gtest/gtest.h>

#include <string>

namespace nino::nowcaster {
namespace {

TEST(GrpcStatus, SameCodeAndBoundedMessage) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  grpc::Status s = ToGrpcStatus(absl::DataLossError("chunk 3: crc32c mismatch"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_EQ(s.error_message(), "chunk 3: crc32c mismatch");
  EXPECT_EQ(ToGrpcStatus(absl::ResourceExhaustedError("x")).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(
      ToGrpcStatus(absl::InvalidArgumentError(std::string(10000, 'x'))).error_message().size(),
      kMaxStatusMessageBytes);
}

TEST(GrpcStatus, FromGrpcKeepsTheCodeAndNamesTheCall) {
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK, "Predict").ok());
  EXPECT_EQ(FromGrpcStatus(grpc::Status(grpc::StatusCode::DATA_LOSS, "chunk 3: crc32c mismatch"),
                           "PutState step 199"),
            absl::DataLossError("PutState step 199: chunk 3: crc32c mismatch"));
  EXPECT_EQ(FromGrpcStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused")),
            absl::UnavailableError("connection refused"));
}

TEST(GrpcStatus, EveryCodeRoundTrips) {
  for (int c = 1; c <= static_cast<int>(absl::StatusCode::kUnauthenticated); ++c) {
    const absl::Status in(static_cast<absl::StatusCode>(c), "m");
    const grpc::Status wire = ToGrpcStatus(in);
    EXPECT_EQ(static_cast<int>(wire.error_code()), c);
    EXPECT_EQ(FromGrpcStatus(wire), in) << c;
  }
}

}  // namespace
}  // namespace nino::nowcaster
