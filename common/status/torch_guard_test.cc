// GuardTorch / StatusFromException: real LibTorch failures become a Status with the code of the
// table in torch_guard.h and a message without c10's backtrace; results pass through.
#include "common/status/torch_guard.h"

#include <c10/util/Exception.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <new>
#include <stdexcept>
#include <string>

namespace nino {
namespace {

TEST(GuardTorch, AShapeMismatchFromLibTorchIsTheFallbackCodeNamingTheContext) {
  absl::StatusOr<torch::Tensor> r =
      GuardTorch("NiNo forward", []() -> absl::StatusOr<torch::Tensor> {
        return torch::matmul(torch::ones({2, 3}), torch::ones({4, 5}));  // throws c10::Error
      });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(r.status().message().rfind("NiNo forward: ", 0), 0u) << r.status();
  EXPECT_EQ(r.status().message().find("Exception raised from"), absl::string_view::npos)
      << "no backtrace in the message: " << r.status();

  absl::Status s = GuardTorch(
      "reading data/0",
      []() -> absl::Status {
        torch::ones({2}).view({3});  // throws
        return absl::OkStatus();
      },
      absl::StatusCode::kDataLoss);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
}

TEST(GuardTorch, ResultsAndErrorsOfFnPassThrough) {
  absl::StatusOr<int> ok = GuardTorch("x", []() -> absl::StatusOr<int> { return 3; });
  EXPECT_EQ(*ok, 3);
  absl::Status err =
      GuardTorch("x", []() -> absl::Status { return absl::NotFoundError("no such job"); });
  EXPECT_EQ(err, absl::NotFoundError("no such job"));
}

TEST(GuardTorch, IndexAndValueChecksTakeTheCallersCode) {
  // A TORCH_CHECK does not say whose fault it was: reading a corrupt file, an index is DATA_LOSS.
  absl::Status index = GuardTorch(
      "select",
      []() -> absl::Status {
        torch::ones({2}).select(0, 5);  // TORCH_CHECK_INDEX: c10::IndexError
        return absl::OkStatus();
      },
      absl::StatusCode::kDataLoss);
  EXPECT_EQ(index.code(), absl::StatusCode::kDataLoss) << index;
  absl::Status value = GuardTorch(
      "check",
      []() -> absl::Status {
        TORCH_CHECK_VALUE(false, "k must be positive, got ", -1);
        return absl::OkStatus();
      },
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(value.code(), absl::StatusCode::kInvalidArgument) << value;
  EXPECT_NE(value.message().find("k must be positive, got -1"), absl::string_view::npos);
}

TEST(GuardTorch, OutOfMemoryIsResourceExhausted) {
  absl::Status c10_oom = GuardTorch("alloc", []() -> absl::Status {
    TORCH_CHECK_WITH(OutOfMemoryError, false, "CUDA out of memory");
    return absl::OkStatus();
  });
  EXPECT_EQ(c10_oom.code(), absl::StatusCode::kResourceExhausted) << c10_oom;
  absl::Status std_oom = GuardTorch("alloc", []() -> absl::Status { throw std::bad_alloc(); });
  EXPECT_EQ(std_oom.code(), absl::StatusCode::kResourceExhausted) << std_oom;
  absl::Status not_impl = GuardTorch("op", []() -> absl::Status {
    TORCH_CHECK_NOT_IMPLEMENTED(false, "no kernel");
    return absl::OkStatus();
  });
  EXPECT_EQ(not_impl.code(), absl::StatusCode::kUnimplemented) << not_impl;
}

TEST(GuardTorch, StandardAndUnknownExceptionsUseTheFallback) {
  absl::Status s = GuardTorch(
      "allreduce", []() -> absl::Status { throw std::runtime_error("connection reset"); },
      absl::StatusCode::kUnavailable);
  EXPECT_EQ(s, absl::UnavailableError("allreduce: connection reset"));
  absl::Status unknown = GuardTorch("x", []() -> absl::Status { throw 42; });
  EXPECT_EQ(unknown, absl::InternalError("x: unknown exception"));
  // An OK fallback would hide the failure: it becomes INTERNAL.
  absl::Status never_ok = GuardTorch(
      "x", []() -> absl::Status { throw std::runtime_error("e"); }, absl::StatusCode::kOk);
  EXPECT_EQ(never_ok.code(), absl::StatusCode::kInternal);
}

TEST(StatusFromException, WorksOnACaughtException) {
  try {
    torch::zeros({2, 2}).reshape({3});
    FAIL() << "reshape did not throw";
  } catch (const std::exception& e) {
    absl::Status s = StatusFromException(e, "reshape", absl::StatusCode::kDataLoss);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
    EXPECT_EQ(s.message().rfind("reshape: ", 0), 0u) << s;
  }
}

}  // namespace
}  // namespace nino
