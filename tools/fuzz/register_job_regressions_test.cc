// Regression tests for the register_job fuzz target's findings (docs/FUZZING.md).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "common/nino/nino_model.h"
#include "common/nino/schedule.h"
#include "nino/v1/nowcaster.pb.h"
#include "nowcaster/job_spec.h"

namespace nino::nowcaster {
namespace {

v1::RegisterJobRequest MlpRequest(double k_decay) {
  v1::RegisterJobRequest r;
  r.set_job_id("mlp");
  const std::pair<const char*, std::vector<int64_t>> shapes[] = {
      {"0.weight", {64, 784}}, {"0.bias", {64}}, {"2.weight", {10, 64}}, {"2.bias", {10}}};
  for (const auto& [name, shape] : shapes) {
    v1::ParamInfo* p = r.add_params();
    p->set_name(name);
    for (int64_t d : shape) p->add_shape(d);
    p->set_dtype(v1::DTYPE_FLOAT32);
  }
  r.set_period(1000);
  r.set_ctx(5);
  r.set_max_train_steps(10000);
  r.set_k_decay(k_decay);
  return r;
}

// Finding 4 (register_job, UB): a tiny k_decay (1e-303, 1e-279, 1e-76) made 40^(1/p) infinite,
// and HorizonSchedule converted NaN to int. k_decay is now limited to [0.01, 100], and the
// schedule keeps every k in [1, seq_len] whatever p it is given.
TEST(RegisterJobFuzzRegression, FoundRequestsAreInvalidArgumentNamingKDecay) {
  for (const char* file : {"ub_k_decay_1e-303.pb", "ub_k_decay_1e-279.pb", "ub_k_decay_1e-76.pb"}) {
    std::ifstream in(std::string("tools/fuzz/regressions/register_job/") + file, std::ios::binary);
    ASSERT_TRUE(in.is_open()) << file;
    std::stringstream buf;
    buf << in.rdbuf();
    v1::RegisterJobRequest request;
    ASSERT_TRUE(request.ParseFromString(buf.str())) << file;
    absl::StatusOr<JobSpec> spec = ValidateJobRequest(request, "nino_no_posw", NiNoConfig{});
    ASSERT_FALSE(spec.ok()) << file;
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << spec.status();
    EXPECT_NE(spec.status().message().find("k_decay"), std::string::npos) << spec.status();
  }
}

TEST(RegisterJobFuzzRegression, KDecayRange) {
  for (double ok : {0.0, 0.01, 0.5, 2.0, 100.0}) {
    absl::StatusOr<JobSpec> spec = ValidateJobRequest(MlpRequest(ok), "m", NiNoConfig{});
    EXPECT_TRUE(spec.ok()) << ok << ": " << spec.status();
  }
  for (double bad : {-1.0, 1e-303, 0.0099, 100.5, 1e300}) {
    absl::StatusOr<JobSpec> spec = ValidateJobRequest(MlpRequest(bad), "m", NiNoConfig{});
    ASSERT_FALSE(spec.ok()) << bad;
    EXPECT_NE(spec.status().message().find("k_decay"), std::string::npos) << spec.status();
    EXPECT_NE(spec.status().message().find("[0.01, 100]"), std::string::npos) << spec.status();
  }
}

TEST(RegisterJobFuzzRegression, ScheduleStaysInRangeForExtremeExponents) {
  for (double p : {1e-303, 1e-76, 1e-3, 0.01, 2.0, 100.0, 1e6, 1e300}) {
    const std::vector<int> k = HorizonSchedule(10000, 1000, p, 40);
    ASSERT_EQ(k.size(), 10u) << p;
    if (p <= 1e6) {
      EXPECT_EQ(k.front(), 40) << p;  // beyond, 40^(1/p) rounds to 1.0
    }
    EXPECT_EQ(k.back(), 1) << p;
    for (int v : k) {
      EXPECT_GE(v, 1) << p;
      EXPECT_LE(v, 40) << p;
    }
  }
  // Unchanged for the default exponent (job_test's FM-16 schedule).
  EXPECT_EQ(HorizonSchedule(10000, 1000, 2.0, 40),
            (std::vector<int>{40, 33, 26, 21, 16, 11, 8, 5, 3, 1}));
}

}  // namespace
}  // namespace nino::nowcaster
