#include "common/runtime/list_flags.h"

#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

ABSL_FLAG(std::vector<std::string>, test_models, {}, "a list flag");
ABSL_FLAG(std::vector<std::string>, test_other, {"x"}, "another list flag");
ABSL_FLAG(int, test_count, 0, "not a list");

namespace nino::runtime {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class ListFlagsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::SetFlag(&FLAGS_test_models, {"parsed"});
    absl::SetFlag(&FLAGS_test_other, {"x"});
    absl::SetFlag(&FLAGS_test_count, 0);
  }
};

TEST_F(ListFlagsTest, OccurrencesInEveryFormInOrder) {
  const char* argv[] = {
      "prog", "--test_models=a,b",  "-test_models=c", "--test_models", "d",  "-test_models",
      "e",    "--test_models_x=no", "--test_other=z", "positional",    "--", "--test_models=after"};
  EXPECT_THAT(FlagOccurrences(12, argv, "test_models"), ElementsAre("a,b", "c", "d", "e"));
  EXPECT_THAT(FlagOccurrences(12, argv, "test_other"), ElementsAre("z"));
  EXPECT_THAT(FlagOccurrences(12, argv, "test_count"), IsEmpty());
}

TEST_F(ListFlagsTest, ProgramNameIsNotAnOccurrence) {
  const char* argv[] = {"--test_models=prog"};
  EXPECT_THAT(FlagOccurrences(1, argv, "test_models"), IsEmpty());
}

TEST_F(ListFlagsTest, RepeatedFlagHoldsEveryValue) {
  const char* argv[] = {"prog", "--test_models=nino_mlp=/m.pt,default", "--test_models",
                        "mine=/x.pt"};
  ASSERT_TRUE(AccumulateListFlags(4, argv, {"test_models", "test_other"}).ok());
  EXPECT_THAT(absl::GetFlag(FLAGS_test_models),
              ElementsAre("nino_mlp=/m.pt", "default", "mine=/x.pt"));
  EXPECT_THAT(absl::GetFlag(FLAGS_test_other), ElementsAre("x"));  // not given: unchanged
}

TEST_F(ListFlagsTest, FlagGivenOnceIsLeftAsParsed) {
  const char* argv[] = {"prog", "--test_models=a"};
  ASSERT_TRUE(AccumulateListFlags(2, argv, {"test_models"}).ok());
  EXPECT_THAT(absl::GetFlag(FLAGS_test_models), ElementsAre("parsed"));
}

TEST_F(ListFlagsTest, UnknownFlagIsRefused) {
  const char* argv[] = {"prog", "--no_such_flag=a", "--no_such_flag=b"};
  const absl::Status status = AccumulateListFlags(3, argv, {"no_such_flag"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("--no_such_flag"));
}

TEST_F(ListFlagsTest, RefusedValueChangesNothing) {
  const char* argv[] = {"prog", "--test_count=1", "--test_count=2"};
  const absl::Status status = AccumulateListFlags(3, argv, {"test_count"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("--test_count"));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_count), 0);
}

}  // namespace
}  // namespace nino::runtime
