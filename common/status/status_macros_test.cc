// NINO_RETURN_IF_ERROR / NINO_ASSIGN_OR_RETURN: errors pass through unchanged (code and
// message), values are moved out, and each expression is evaluated exactly once.
#include "common/status/status_macros.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace nino {
namespace {

absl::Status Fails(int* calls) {
  ++*calls;
  return absl::DataLossError("chunk 3: crc32c mismatch");
}
absl::Status Passes(int* calls) {
  ++*calls;
  return absl::OkStatus();
}
absl::StatusOr<std::unique_ptr<int>> Make(int v, int* calls) {
  ++*calls;
  if (v < 0) return absl::InvalidArgumentError("v must be >= 0");
  return std::make_unique<int>(v);
}

absl::Status Chain(bool fail_first, int* calls) {
  NINO_RETURN_IF_ERROR(fail_first ? Fails(calls) : Passes(calls));
  NINO_RETURN_IF_ERROR(Fails(calls));
  return absl::OkStatus();
}

TEST(StatusMacros, ReturnIfErrorPassesTheFirstErrorThroughUnchanged) {
  int calls = 0;
  absl::Status s = Chain(/*fail_first=*/true, &calls);
  EXPECT_EQ(s, absl::DataLossError("chunk 3: crc32c mismatch"));
  EXPECT_EQ(calls, 1) << "nothing after the error ran";
  calls = 0;
  s = Chain(/*fail_first=*/false, &calls);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(calls, 2);
}

absl::StatusOr<int> ReturnIfErrorOnStatusOr(int v, int* calls) {
  NINO_RETURN_IF_ERROR(Make(v, calls));  // a StatusOr works too; its value is dropped
  return 7;
}

TEST(StatusMacros, ReturnIfErrorTakesAStatusOrAndReturnsIntoAStatusOr) {
  int calls = 0;
  absl::StatusOr<int> r = ReturnIfErrorOnStatusOr(-1, &calls);
  EXPECT_EQ(r.status(), absl::InvalidArgumentError("v must be >= 0"));
  EXPECT_EQ(*ReturnIfErrorOnStatusOr(1, &calls), 7);
  EXPECT_EQ(calls, 2);
}

absl::StatusOr<int> Sum(int a, int b, int* calls) {
  NINO_ASSIGN_OR_RETURN(auto x, Make(a, calls));  // declares x (a move-only type)
  std::unique_ptr<int> y;
  NINO_ASSIGN_OR_RETURN(y, Make(b, calls));  // assigns an existing variable
  return *x + *y;
}

TEST(StatusMacros, AssignOrReturnMovesTheValueOrReturnsTheError) {
  int calls = 0;
  EXPECT_EQ(*Sum(2, 3, &calls), 5);
  EXPECT_EQ(calls, 2) << "each expression evaluated once";
  calls = 0;
  absl::StatusOr<int> r = Sum(-1, 3, &calls);
  EXPECT_EQ(r.status(), absl::InvalidArgumentError("v must be >= 0"));
  EXPECT_EQ(calls, 1);
  calls = 0;
  EXPECT_EQ(Sum(2, -3, &calls).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(calls, 2);
}

absl::Status TwoOnOneLine(int* calls) {
  // Two expansions in one function (distinct temporaries per line).
  NINO_ASSIGN_OR_RETURN(auto a, Make(1, calls));
  NINO_ASSIGN_OR_RETURN(auto b, Make(2, calls));
  return *a + *b == 3 ? absl::OkStatus() : absl::InternalError("wrong sum");
}

TEST(StatusMacros, SeveralAssignmentsInOneFunction) {
  int calls = 0;
  EXPECT_TRUE(TwoOnOneLine(&calls).ok());
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace nino
