// The model catalog and the embedding of a model's bytes, on a synthetic WNN+ checkpoint
// embedded under the default model's symbol (so this test does not depend on the shipped model).
#include "common/nino/model_catalog.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "common/io/checkpoint_locator.h"
#include "common/nino/default_model.h"

namespace nino {
namespace {

std::string Runfile(const std::string& rel) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* ws = std::getenv("TEST_WORKSPACE");
  return srcdir && ws ? std::string(srcdir) + "/" + ws + "/" + rel : rel;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const std::string kSynthetic = "tools/synthetic_nino_mlp.pt";

TEST(DefaultModel, EmbeddedBytesAreTheFileBytes) {
  const std::string file = ReadAll(Runfile(kSynthetic));
  ASSERT_GT(file.size(), 1000u);
  EXPECT_EQ(DefaultModelBytes().size(), file.size());
  EXPECT_TRUE(DefaultModelBytes() == file);
  EXPECT_EQ(DefaultModelSha256(), io::Sha256Hex(file));
}

TEST(DefaultModel, LoadsLikeTheFile) {
  absl::StatusOr<NiNoModel> embedded = LoadDefaultModel();
  ASSERT_TRUE(embedded.ok()) << embedded.status();
  absl::StatusOr<NiNoModel> file = NiNoModel::Load(Runfile(kSynthetic));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(embedded->is_gnn(), file->is_gnn());
  ASSERT_EQ(embedded->state_dict().size(), file->state_dict().size());
  for (size_t i = 0; i < file->state_dict().size(); ++i) {
    EXPECT_EQ(embedded->state_dict()[i].first, file->state_dict()[i].first);
    EXPECT_TRUE(torch::equal(embedded->state_dict()[i].second, file->state_dict()[i].second))
        << file->state_dict()[i].first;
  }
}

TEST(ModelCatalog, DefaultNamesResolveToTheEmbeddedModel) {
  for (const std::string name : {"", "default", kDefaultModelName, kDefaultModelFile}) {
    absl::StatusOr<ResolvedModel> r = ResolveModel(name, /*allow_download=*/false);
    ASSERT_TRUE(r.ok()) << name << ": " << r.status();
    EXPECT_EQ(r->name, kDefaultModelName);
    EXPECT_EQ(r->source, "embedded");
    EXPECT_TRUE(r->path.empty());
    EXPECT_TRUE(LoadModel(*r).ok());
  }
  EXPECT_FALSE(IsDefaultModelName("nino_no_posw"));
}

TEST(ModelCatalog, PathsResolveToFilesNamedByTheirStem) {
  absl::StatusOr<ResolvedModel> r = ResolveModel(Runfile(kSynthetic), false);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->name, "synthetic_nino_mlp");
  EXPECT_EQ(r->source, "explicit");
  absl::StatusOr<NiNoModel> m = LoadModel(*r);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_FALSE(m->is_gnn());
}

TEST(ModelCatalog, UnknownNameIsNotFoundAndSaysWhatExists) {
  absl::StatusOr<ResolvedModel> r = ResolveModel("no_such_model", false);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find(kDefaultModelName), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("nino_no_posw"), std::string::npos) << r.status();
}

TEST(ModelCatalog, OfficialNameWithoutNetworkOrSharedIsNotFoundNamingTheFile) {
  const std::string empty = ::testing::TempDir() + "/catalog_empty";
  setenv("NINO_CACHE_DIR", empty.c_str(), 1);
  setenv("NINO_SHARED_DIR", empty.c_str(), 1);
  absl::StatusOr<ResolvedModel> r = ResolveModel("nino_mlp", /*allow_download=*/false);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("nino_mlp.pt"), std::string::npos) << r.status();
  unsetenv("NINO_CACHE_DIR");
  unsetenv("NINO_SHARED_DIR");
}

TEST(ModelCatalog, OfficialNameFoundInSharedWhenPresent) {
  // A fake ../shared holding a file under an official name with the wrong bytes is refused by
  // its checksum: the catalog never serves an unverified "official" model.
  const std::string shared = ::testing::TempDir() + "/catalog_shared";
  std::string dir = shared + "/reference/checkpoints";
  ASSERT_EQ(std::system(("mkdir -p " + dir).c_str()), 0);
  std::ofstream(dir + "/nino_mlp.pt") << "not the official file";
  setenv("NINO_CACHE_DIR", (shared + "/cache").c_str(), 1);
  setenv("NINO_SHARED_DIR", shared.c_str(), 1);
  absl::StatusOr<ResolvedModel> r = ResolveModel("nino_mlp.pt", false);
  EXPECT_FALSE(r.ok());
  unsetenv("NINO_CACHE_DIR");
  unsetenv("NINO_SHARED_DIR");
}

}  // namespace
}  // namespace nino
