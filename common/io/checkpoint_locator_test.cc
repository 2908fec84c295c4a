#include "common/io/checkpoint_locator.h"

#include <stdlib.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace nino::io {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kAbcSha256[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr char kEmptySha256[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

void WriteFile(const std::string& path, const std::string& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  ASSERT_TRUE(out.good()) << path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  if (!fs::exists(dir)) return names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename());
  return names;
}

// file:// URL for an absolute path, percent-encoding everything but unreserved bytes and '/'.
std::string FileUrl(const std::string& path) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string url = "file://";
  for (unsigned char c : path) {
    if (std::isalnum(c) || c == '/' || c == '-' || c == '_' || c == '.' || c == '~') {
      url.push_back(static_cast<char>(c));
    } else {
      url.push_back('%');
      url.push_back(kHex[c >> 4]);
      url.push_back(kHex[c & 0xf]);
    }
  }
  return url;
}

// Saves an environment variable and restores it when the test ends.
class ScopedEnv {
 public:
  explicit ScopedEnv(const char* name) : name_(name) {
    const char* v = getenv(name);
    if (v != nullptr) saved_ = v;
  }
  ~ScopedEnv() {
    if (saved_) {
      setenv(name_, saved_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> saved_;
};

class CheckpointLocatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* base = getenv("TEST_TMPDIR");
    std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/ckpt_locator_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    cache_dir_ = root_ + "/cache/nested";  // does not exist yet: downloads must create it
    shared_dir_ = root_ + "/shared";
    fs::create_directories(shared_dir_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // Options that never touch $HOME, the real shared folder or the network.
  LocatorOptions Options(const std::string& name, const std::string& bytes) {
    LocatorOptions o;
    o.name = name;
    o.cache_dir = cache_dir_;
    o.shared_dir = shared_dir_;
    o.sha256_override = Sha256Hex(bytes);
    o.url_override = FileUrl(root_ + "/does_not_exist/" + name);
    o.fetcher = [this](const std::string& url, const std::string&) {
      fetched_urls_.push_back(url);
      return absl::UnavailableError("test fetcher: offline");
    };
    return o;
  }

  std::string SharedPath(const std::string& name) {
    return shared_dir_ + "/reference/checkpoints/" + name;
  }

  std::string root_, cache_dir_, shared_dir_;
  std::vector<std::string> fetched_urls_;
};

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256Hex("abc"), kAbcSha256);
  EXPECT_EQ(Sha256Hex(""), kEmptySha256);
}

TEST_F(CheckpointLocatorTest, Sha256FileStreamsLargerThanOneChunk) {
  std::string bytes(200000, 'x');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 131 % 251);
  WriteFile(root_ + "/big.bin", bytes);
  WriteFile(root_ + "/abc.bin", "abc");
  EXPECT_EQ(*Sha256File(root_ + "/big.bin"), Sha256Hex(bytes));
  EXPECT_EQ(*Sha256File(root_ + "/abc.bin"), kAbcSha256);
  absl::StatusOr<std::string> missing = Sha256File(root_ + "/nope.bin");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr(root_ + "/nope.bin"));
}

TEST(Sha256Test, SharedCheckpointsMatchOfficialHashes) {
  const std::string dir = DefaultSharedDir() + "/reference/checkpoints";
  if (!fs::exists(dir)) GTEST_SKIP() << "shared checkpoints absent: " << dir;
  for (const KnownCheckpoint& known : OfficialCheckpoints()) {
    absl::StatusOr<std::string> got = Sha256File(dir + "/" + known.name);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, known.sha256) << known.name;
  }
}

TEST(OfficialCheckpointsTest, Table) {
  ASSERT_EQ(OfficialCheckpoints().size(), 3u);
  const KnownCheckpoint* c = FindOfficialCheckpoint("nino_no_posw.pt");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->url,
            "https://github.com/SamsungSAILMontreal/nino/raw/main/checkpoints/nino_no_posw.pt");
  EXPECT_EQ(c->sha256, "2e2186e4a0e50193080eb9074648786ef25cd5ac3149a7df790127fe41101620");
  EXPECT_NE(FindOfficialCheckpoint("nino_mlp.pt"), nullptr);
  EXPECT_NE(FindOfficialCheckpoint("nino_mlp_h32.pt"), nullptr);
  EXPECT_EQ(FindOfficialCheckpoint("nino.pt"), nullptr);
}

TEST(DefaultDirsTest, CacheDirEnvPrecedence) {
  ScopedEnv a("NINO_CACHE_DIR"), b("XDG_CACHE_HOME"), c("HOME");
  setenv("NINO_CACHE_DIR", "/n/cache", 1);
  setenv("XDG_CACHE_HOME", "/x/cache", 1);
  setenv("HOME", "/h/me", 1);
  EXPECT_EQ(DefaultCacheDir(), "/n/cache");
  unsetenv("NINO_CACHE_DIR");
  EXPECT_EQ(DefaultCacheDir(), "/x/cache/nino");
  setenv("XDG_CACHE_HOME", "relative/cache", 1);  // invalid per the XDG spec: ignored
  EXPECT_EQ(DefaultCacheDir(), "/h/me/.cache/nino");
  unsetenv("XDG_CACHE_HOME");
  EXPECT_EQ(DefaultCacheDir(), "/h/me/.cache/nino");
  setenv("NINO_CACHE_DIR", "", 1);  // empty counts as unset
  EXPECT_EQ(DefaultCacheDir(), "/h/me/.cache/nino");
  unsetenv("HOME");
  EXPECT_EQ(DefaultCacheDir(), "");
}

TEST(DefaultDirsTest, SharedDirEnvOverridesDefault) {
  ScopedEnv s("NINO_SHARED_DIR");
  setenv("NINO_SHARED_DIR", "/some/shared", 1);
  EXPECT_EQ(DefaultSharedDir(), "/some/shared");
  unsetenv("NINO_SHARED_DIR");
#ifdef NINO_SHARED_DIR_DEFAULT
  EXPECT_EQ(DefaultSharedDir(), NINO_SHARED_DIR_DEFAULT);
#endif
}

TEST_F(CheckpointLocatorTest, ExplicitPathIsUsedWithoutChecks) {
  std::string path = root_ + "/my own.pt";
  WriteFile(path, "anything");
  LocatorOptions o = Options("whatever_unknown.pt", "irrelevant");
  o.explicit_path = path;
  absl::StatusOr<LocatedCheckpoint> got = LocateCheckpoint(o);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->path, path);
  EXPECT_EQ(got->source, "explicit");
  EXPECT_TRUE(fetched_urls_.empty());
}

TEST_F(CheckpointLocatorTest, ExplicitMissingPathIsNotFound) {
  std::string bytes = "ckpt";
  WriteFile(SharedPath("a.pt"), bytes);  // must not be used as a silent substitute
  LocatorOptions o = Options("a.pt", bytes);
  o.explicit_path = root_ + "/missing.pt";
  absl::StatusOr<LocatedCheckpoint> got = LocateCheckpoint(o);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(got.status().message()), HasSubstr(root_ + "/missing.pt"));
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("--nino_ckpt"));
}

TEST_F(CheckpointLocatorTest, CacheHitWithRightChecksum) {
  std::string bytes = "cached checkpoint";
  WriteFile(cache_dir_ + "/a.pt", bytes);
  WriteFile(SharedPath("a.pt"), bytes);
  absl::StatusOr<LocatedCheckpoint> got = LocateCheckpoint(Options("a.pt", bytes));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->source, "cache");
  EXPECT_EQ(got->path, cache_dir_ + "/a.pt");
  EXPECT_TRUE(fetched_urls_.empty());
}

TEST_F(CheckpointLocatorTest, CacheWithWrongChecksumIsIgnoredAndSharedUsed) {
  std::string bytes = "good bytes";
  std::string bad_sha = Sha256Hex("corrupted");
  WriteFile(cache_dir_ + "/a.pt", "corrupted");
  WriteFile(SharedPath("a.pt"), bytes);
  LocatorOptions o = Options("a.pt", bytes);
  absl::StatusOr<LocatedCheckpoint> got = LocateCheckpoint(o);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->source, "shared");
  EXPECT_EQ(got->path, SharedPath("a.pt"));
  std::string notes = absl::StrJoin(got->notes, "\n");
  EXPECT_THAT(notes, HasSubstr(cache_dir_ + "/a.pt"));
  EXPECT_THAT(notes, HasSubstr("sha256 mismatch"));
  EXPECT_THAT(notes, HasSubstr(bad_sha));
  EXPECT_THAT(notes, HasSubstr(o.sha256_override));
  EXPECT_EQ(fetched_urls_.size(), 1u);  // the download was tried (and failed) before shared
  EXPECT_EQ(ReadFile(cache_dir_ + "/a.pt"), "corrupted");  // never replaced by a failed fetch
}

TEST_F(CheckpointLocatorTest, CacheWithWrongChecksumIsReplacedByDownload) {
  std::string bytes = "good bytes";
  WriteFile(cache_dir_ + "/a.pt", "corrupted");
  LocatorOptions o = Options("a.pt", bytes);
  o.fetcher = [&](const std::string& url, const std::string& dest) {
    fetched_urls_.push_back(url);
    WriteFile(dest, bytes);
    return absl::OkStatus();
  };
  absl::StatusOr<LocatedCheckpoint> got = LocateCheckpoint(o);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->source, "download");
  EXPECT_EQ(got->path, cache_dir_ + "/a.pt");
  EXPECT_EQ(ReadFile(got->path), bytes);
  EXPECT_THAT(absl::StrJoin(got->notes, "\n"), HasSubstr("sha256 mismatch"));
  EXPECT_EQ(fetched_urls_, std::vector<std::string>{o.url_override});
  EXPECT_EQ(ListDir(cache_dir_), std::vector<std::string>{"a.pt"});  // no temp file left
}

TEST_F(CheckpointLocatorTest, DownloadViaCurlFileUrlLandsInCache) {
  std::string bytes(50000, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i % 256);
  std::string source = root_ + "/upstream dir/a.pt";  // space: exercises URL encoding
  WriteFile(source, bytes);
  LocatorOptions o = Options("a.pt", bytes);
  o.url_override = FileUrl(source);
  o.fetcher = nullptr;  // the real CurlFetch
  ASSERT_FALSE(fs::exists(cache_dir_));
  absl::StatusOr<LocatedCheckpoint> got = LocateCheckpoint(o);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->source, "download");
  EXPECT_EQ(got->path, cache_dir_ + "/a.pt");
  EXPECT_EQ(ReadFile(got->path), bytes);
  EXPECT_EQ(ListDir(cache_dir_), std::vector<std::string>{"a.pt"});

  // A second lookup is a cache hit.
  absl::StatusOr<LocatedCheckpoint> again = LocateCheckpoint(o);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->source, "cache");
}

TEST_F(CheckpointLocatorTest, DownloadWithWrongChecksumFailsAndLeavesNothing) {
  std::string source = root_ + "/upstream/a.pt";
  WriteFile(source, "tampered bytes");
  LocatorOptions o = Options("a.pt", "expected bytes");
  o.url_override = FileUrl(source);
  o.fetcher = nullptr;
  absl::StatusOr<LocatedCheckpoint> got = LocateCheckpoint(o);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
  std::string msg(got.status().message());
  EXPECT_THAT(msg, HasSubstr("expected " + Sha256Hex("expected bytes")));
  EXPECT_THAT(msg, HasSubstr("got " + Sha256Hex("tampered bytes")));
  EXPECT_THAT(msg, HasSubstr(o.url_override));
  EXPECT_TRUE(ListDir(cache_dir_).empty()) << absl::StrJoin(ListDir(cache_dir_), ",");
}

TEST_F(CheckpointLocatorTest, CurlFailureFallsBackToShared) {
  std::string bytes = "shared bytes";
  WriteFile(SharedPath("a.pt"), bytes);
  LocatorOptions o = Options("a.pt", bytes);  // url_override points at a missing file
  o.fetcher = nullptr;
  absl::StatusOr<LocatedCheckpoint> got = LocateCheckpoint(o);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->source, "shared");
  EXPECT_EQ(got->path, SharedPath("a.pt"));
  EXPECT_THAT(absl::StrJoin(got->notes, "\n"), HasSubstr("could not download " + o.url_override));
  EXPECT_TRUE(ListDir(cache_dir_).empty()) << absl::StrJoin(ListDir(cache_dir_), ",");
}

TEST_F(CheckpointLocatorTest, InjectedFetcherFailureFallsBackToShared) {
  std::string bytes = "shared bytes";
  WriteFile(SharedPath("a.pt"), bytes);
  LocatorOptions o = Options("a.pt", bytes);
  absl::StatusOr<LocatedCheckpoint> got = LocateCheckpoint(o);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->source, "shared");
  EXPECT_THAT(absl::StrJoin(got->notes, "\n"), HasSubstr("test fetcher: offline"));
  EXPECT_EQ(fetched_urls_.size(), 1u);
  EXPECT_TRUE(ListDir(cache_dir_).empty()) << absl::StrJoin(ListDir(cache_dir_), ",");
}

TEST_F(CheckpointLocatorTest, SharedWithWrongChecksumIsNotUsed) {
  WriteFile(SharedPath("a.pt"), "wrong");
  LocatorOptions o = Options("a.pt", "right");
  absl::StatusOr<LocatedCheckpoint> got = LocateCheckpoint(o);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(got.status().message()), HasSubstr(Sha256Hex("wrong")));
}

TEST_F(CheckpointLocatorTest, NothingAvailableOfficialNameSaysHowToGetIt) {
  LocatorOptions o;
  o.name = "nino_no_posw.pt";
  o.cache_dir = cache_dir_;
  o.shared_dir = shared_dir_;
  o.allow_download = false;
  o.fetcher = [this](const std::string& url, const std::string&) {
    fetched_urls_.push_back(url);
    return absl::OkStatus();
  };
  absl::StatusOr<LocatedCheckpoint> got = LocateCheckpoint(o);
  ASSERT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  std::string msg(got.status().message());
  const KnownCheckpoint* known = FindOfficialCheckpoint("nino_no_posw.pt");
  EXPECT_THAT(msg, HasSubstr(known->url));
  EXPECT_THAT(msg, HasSubstr(known->sha256));
  EXPECT_THAT(msg, HasSubstr(cache_dir_ + "/nino_no_posw.pt"));  // where to put it
  EXPECT_THAT(msg, HasSubstr(SharedPath("nino_no_posw.pt")));    // what was tried
  EXPECT_THAT(msg, HasSubstr("download: disabled"));
  EXPECT_THAT(msg, HasSubstr("--nino_ckpt PATH"));
  EXPECT_TRUE(fetched_urls_.empty());
  EXPECT_FALSE(fs::exists(cache_dir_));
}

TEST_F(CheckpointLocatorTest, UnknownNameWithoutOverridesNamesKnownOnes) {
  LocatorOptions o;
  o.name = "nino.pt";
  o.cache_dir = cache_dir_;
  o.shared_dir = shared_dir_;
  o.allow_download = false;
  absl::StatusOr<LocatedCheckpoint> got = LocateCheckpoint(o);
  ASSERT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  std::string msg(got.status().message());
  EXPECT_THAT(msg, HasSubstr("nino.pt"));
  for (const KnownCheckpoint& c : OfficialCheckpoints()) EXPECT_THAT(msg, HasSubstr(c.name));
}

TEST_F(CheckpointLocatorTest, NameMustBeAPlainFileName) {
  LocatorOptions o = Options("../escape.pt", "x");
  EXPECT_EQ(LocateCheckpoint(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CheckpointLocatorTest, CurlFetchReportsUnreachableHost) {
  // Port 1 on loopback: refused at once, like being offline, without touching the network.
  std::string dest = root_ + "/out.bin";
  absl::Status s = CurlFetch("http://127.0.0.1:1/nino_no_posw.pt", dest);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("could not download http://127.0.0.1:1/nino_no_posw.pt: "));
  EXPECT_FALSE(fs::exists(dest));
}

}  // namespace
}  // namespace nino::io
