// The shipped default model: the embedded bytes are models/<kDefaultModelFile>, it loads with
// the strict checkpoint reader, and it nowcasts an FM-16-sized layout to finite values near the
// last state.
#include "common/nino/default_model.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "common/io/checkpoint_locator.h"
#include "common/nino/model_catalog.h"
#include "common/nino/nowcast_engine.h"
#include "common/nino/test_layouts.h"

namespace nino {
namespace {

std::string ModelFile() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* ws = std::getenv("TEST_WORKSPACE");
  const std::string rel = std::string("models/") + kDefaultModelFile;
  return srcdir && ws ? std::string(srcdir) + "/" + ws + "/" + rel : rel;
}

TEST(DefaultModel, EmbeddedBytesAreTheCommittedFile) {
  std::ifstream in(ModelFile(), std::ios::binary);
  ASSERT_TRUE(in.good()) << ModelFile();
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_TRUE(DefaultModelBytes() == ss.str());
  EXPECT_LT(DefaultModelBytes().size(), size_t{5} << 20) << "the shipped model is a few MB at most";
}

TEST(DefaultModel, LoadsStrictlyAndNowcasts) {
  absl::StatusOr<ResolvedModel> r = ResolveModel("default", /*allow_download=*/false);
  ASSERT_TRUE(r.ok()) << r.status();
  absl::StatusOr<NiNoModel> m = LoadModel(*r);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->config().ctx, 5);
  std::vector<ParamSpec> params;
  int64_t P = 0;
  for (const auto& [name, shape] : testing::Fm16Layout()) {
    ParamSpec p{name, shape, P, 1};
    for (int64_t d : shape) p.numel *= d;
    P += p.numel;
    params.push_back(p);
  }
  ASSERT_EQ(P, 14378);
  auto engine =
      NowcastEngine::Create(std::make_shared<const NiNoModel>(std::move(*m)), params, GraphSpec{});
  ASSERT_TRUE(engine.ok()) << engine.status();
  torch::manual_seed(0);
  const torch::Tensor base = torch::randn({P}) * 0.1, drift = torch::randn({P}) * 0.002;
  std::vector<torch::Tensor> rows;
  for (int t = 0; t < 5; ++t) rows.push_back(base + drift * t);
  absl::StatusOr<torch::Tensor> pred = (*engine)->Nowcast(torch::stack(rows), 10);
  ASSERT_TRUE(pred.ok()) << pred.status();
  ASSERT_EQ(pred->numel(), P);
  EXPECT_TRUE(torch::isfinite(*pred).all().item<bool>());
  // A nowcast moves the parameters, but by an amount of the order of the trajectory's motion.
  const double moved = (*pred - rows.back()).abs().mean().item<double>();
  EXPECT_GT(moved, 0);
  EXPECT_LT(moved, 1.0);
}

}  // namespace
}  // namespace nino
