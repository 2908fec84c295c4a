// Parity with the official NiNo code: every case in <shared>/golden must reproduce the official
// graph exactly and the predicted parameters within 1e-5 (absolute).
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/testing/test_util.h"
#include "tools/golden_case.h"

namespace {

using nino::testing::SharedDir;  // compares with the official outputs: may skip without it

TEST(GoldenParity, EveryCaseMatchesTheOfficialCode) {
  at::set_num_threads(2);
  const std::string golden = SharedDir() + "/golden";
  const std::string ckpts = SharedDir() + "/reference/checkpoints";
  if (!std::filesystem::exists(golden + "/index.json") || !std::filesystem::exists(ckpts)) {
    GTEST_SKIP() << "golden data or checkpoints absent under " << SharedDir()
                 << " (set NINO_SHARED_DIR to the shared folder to run this test)";
  }
  const auto manifests = nino::golden::FindManifests(golden);
  ASSERT_EQ(manifests.size(), 18u) << "expected the 18 golden cases under " << golden;
  nino::golden::ModelCache models(ckpts);
  for (const auto& m : manifests) {
    auto r = nino::golden::RunCase(golden, m, &models, 1e-5);
    std::string details;
    for (const auto& d : r.details) details += "\n  " + d;
    EXPECT_TRUE(r.passed) << r.name << ": " << r.summary << details;
    EXPECT_TRUE(r.graph_equal) << r.name;
    EXPECT_GE(r.pred_max_abs, 0.0) << r.name;
    EXPECT_LE(r.pred_max_abs, 1e-5) << r.name;
    // The official positional encoding is an eigenvector basis of our Laplacian.
    for (size_t c = 0; c < r.lpe_eigen_residuals.size(); ++c) {
      EXPECT_LT(r.lpe_eigen_residuals[c], 1e-5) << r.name << " LPE column " << c;
    }
  }
}

}  // namespace
