// The POSIX Env and WriteFileAtomically on a real folder.
#include "common/env/env.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/match.h"
#include "common/env/write_file_atomically.h"

namespace nino {
namespace {
namespace fs = std::filesystem;

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class PosixEnvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  std::string P(const std::string& name) const { return (dir_ / name).string(); }
  std::vector<std::string> Names() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
  }
  Env* env_ = Env::Default();
  fs::path dir_;
};

TEST_F(PosixEnvTest, WritesAppendsRenamesAndRemoves) {
  auto f = env_->NewWritableFile(P("a"));
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE((*f)->Append("hello ").ok());
  ASSERT_TRUE((*f)->Append(std::string(100000, 'x')).ok());  // larger than the buffer
  ASSERT_TRUE((*f)->Sync().ok());
  ASSERT_TRUE((*f)->Close().ok());
  EXPECT_FALSE((*f)->Append("late").ok());  // closed
  EXPECT_EQ(Slurp(P("a")), "hello " + std::string(100000, 'x'));

  auto g = env_->NewAppendableFile(P("a"));
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_TRUE((*g)->Append("!").ok());
  ASSERT_TRUE((*g)->Flush().ok());
  EXPECT_EQ(Slurp(P("a")).back(), '!');
  g->reset();  // closes

  EXPECT_TRUE(env_->FileExists(P("a")));
  ASSERT_TRUE(env_->RenameFile(P("a"), P("b")).ok());
  EXPECT_FALSE(env_->FileExists(P("a")));
  ASSERT_TRUE(env_->SyncDir(dir_.string()).ok());
  ASSERT_TRUE(env_->RemoveFile(P("b")).ok());
  EXPECT_TRUE(Names().empty());
}

TEST_F(PosixEnvTest, ErrorsNameThePathAndMapErrno) {
  auto f = env_->NewWritableFile(P("no/such/folder/x"));
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound) << f.status();
  EXPECT_TRUE(absl::StrContains(f.status().message(), "no/such/folder/x")) << f.status();
  absl::Status s = env_->RenameFile(P("missing"), P("y"));
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "missing")) << s;
  EXPECT_EQ(env_->RemoveFile(P("missing")).code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(env_->SyncDir(P("missing")).ok());
}

TEST_F(PosixEnvTest, ClockIsMonotonicAndSleepSleeps) {
  const int64_t t0 = env_->NowMicros();
  env_->SleepForMicroseconds(2000);
  EXPECT_GE(env_->NowMicros() - t0, 2000);
  EXPECT_LT(absl::AbsDuration(env_->Now() - absl::Now()), absl::Seconds(5));
}

TEST_F(PosixEnvTest, WriteFileAtomicallyReplacesAndLeavesNoTemporary) {
  ASSERT_TRUE(WriteFileAtomically(env_, P("c"), "one").ok());
  ASSERT_TRUE(WriteFileAtomically(env_, P("c"), "two, longer").ok());
  EXPECT_EQ(Slurp(P("c")), "two, longer");
  // A failing contents writer leaves the old file and no temporary.
  absl::Status s = WriteFileAtomically(env_, P("c"), [](WritableFile& f) {
    (void)f.Append("partial");
    return absl::DataLossError("the producer failed");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(Slurp(P("c")), "two, longer");
  EXPECT_EQ(Names(), std::vector<std::string>{"c"});
  // A missing folder is NOT_FOUND naming the file.
  s = WriteFileAtomically(env_, P("nowhere/d"), "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "nowhere")) << s;
  // A path without a folder is relative to the working folder.
  EXPECT_EQ(DirectoryOf("plain"), ".");
  EXPECT_EQ(DirectoryOf("/top"), "/");
  EXPECT_EQ(DirectoryOf("a/b/c"), "a/b");
}

}  // namespace
}  // namespace nino
