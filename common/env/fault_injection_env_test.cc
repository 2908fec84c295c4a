// FaultInjectionEnv's power-loss model, its faults, and WriteFileAtomically under each fault.
#include "common/env/fault_injection_env.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/match.h"
#include "common/env/write_file_atomically.h"

namespace nino {
namespace {
namespace fs = std::filesystem;
using Op = FaultInjectionEnv::Op;

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class FaultInjectionEnvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::path(::testing::TempDir()) /
            ::testing::UnitTest::GetInstance()->current_test_info()->name())
               .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  std::string P(const std::string& name) const { return dir_ + "/" + name; }
  std::vector<std::string> Names() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
  }
  void Write(const std::string& name, const std::string& bytes, bool sync) {
    auto f = env_.NewWritableFile(P(name));
    ASSERT_TRUE(f.ok()) << f.status();
    ASSERT_TRUE((*f)->Append(bytes).ok());
    if (sync) {
      ASSERT_TRUE((*f)->Sync().ok());
    }
    ASSERT_TRUE((*f)->Close().ok());
  }
  FaultInjectionEnv env_;
  std::string dir_;
};

TEST_F(FaultInjectionEnvTest, PowerLossCutsAppendsMadeAfterTheLastSync) {
  auto f = env_.NewWritableFile(P("log"));
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append("abc").ok());
  ASSERT_TRUE((*f)->Sync().ok());
  ASSERT_TRUE((*f)->Append("def").ok());
  ASSERT_TRUE((*f)->Close().ok());
  ASSERT_TRUE(env_.SyncDir(dir_).ok());
  EXPECT_EQ(Slurp(P("log")), "abcdef");
  ASSERT_TRUE(env_.DropUnsyncedData().ok());
  EXPECT_EQ(Slurp(P("log")), "abc");
  // A file that was never synced keeps its (durable) name but no data.
  Write("empty", "lost", /*sync=*/false);
  ASSERT_TRUE(env_.SyncDir(dir_ + "/").ok());  // the folder's spelling does not matter
  ASSERT_TRUE(env_.DropUnsyncedData().ok());
  EXPECT_EQ(Slurp(P("empty")), "");
}

TEST_F(FaultInjectionEnvTest, PowerLossUndoesEntriesNotMadeDurableByAFolderSync) {
  std::ofstream(P("old")) << "old contents";  // written outside the env: durable
  std::ofstream(P("doomed")) << "still here";
  Write("new", "synced data", /*sync=*/true);  // created, but the folder was not synced
  ASSERT_TRUE(env_.RenameFile(P("new"), P("old")).ok());
  ASSERT_TRUE(env_.RemoveFile(P("doomed")).ok());
  EXPECT_EQ(Names(), std::vector<std::string>{"old"});
  EXPECT_EQ(Slurp(P("old")), "synced data");
  ASSERT_TRUE(env_.DropUnsyncedData().ok());
  EXPECT_EQ(Names(), (std::vector<std::string>{"doomed", "old"}));
  EXPECT_EQ(Slurp(P("old")), "old contents");
  EXPECT_EQ(Slurp(P("doomed")), "still here");

  // The same sequence with a folder sync survives.
  Write("new", "synced data", /*sync=*/true);
  ASSERT_TRUE(env_.RenameFile(P("new"), P("old")).ok());
  ASSERT_TRUE(env_.RemoveFile(P("doomed")).ok());
  ASSERT_TRUE(env_.SyncDir(dir_).ok());
  ASSERT_TRUE(env_.DropUnsyncedData().ok());
  EXPECT_EQ(Names(), std::vector<std::string>{"old"});
  EXPECT_EQ(Slurp(P("old")), "synced data");
}

TEST_F(FaultInjectionEnvTest, FaultsHitTheNthMatchingCallOnce) {
  env_.FailNth(Op::kWrite, 2, "target");
  auto other = env_.NewWritableFile(P("other"));
  auto target = env_.NewWritableFile(P("target"));
  ASSERT_TRUE(other.ok() && target.ok());
  EXPECT_TRUE((*other)->Append("x").ok());  // does not match
  EXPECT_TRUE((*target)->Append("1234").ok());
  absl::Status s = (*target)->Append("abcdef");
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(absl::StrContains(s.message(), "injected fault: write")) << s;
  EXPECT_TRUE((*target)->Append("!").ok());  // fired once
  ASSERT_TRUE((*target)->Close().ok());
  EXPECT_EQ(Slurp(P("target")), "1234abc!");  // the failed write was torn in half
  EXPECT_EQ(env_.injected(), 1);
  EXPECT_EQ(env_.calls(Op::kWrite), 4);

  env_.FailNth(Op::kOpen, 1);
  EXPECT_FALSE(env_.NewAppendableFile(P("target")).ok());
  env_.FailNth(Op::kRemove, 1);
  EXPECT_FALSE(env_.RemoveFile(P("target")).ok());
  EXPECT_TRUE(fs::exists(P("target")));
  env_.FailNth(Op::kSync, 1);
  env_.ClearFaults();
  auto again = env_.NewAppendableFile(P("target"));
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE((*again)->Sync().ok());
}

// WriteFileAtomically under each fault: the error comes back, the old file is what a reader
// sees (before and after a power loss), and no temporary is left behind.
TEST_F(FaultInjectionEnvTest, WriteFileAtomicallyUnderEveryFault) {
  const std::string path = P("ckpt");
  const std::string old_bytes(5000, 'o'), new_bytes(9000, 'n');
  for (Op op : {Op::kOpen, Op::kWrite, Op::kSync, Op::kRename, Op::kSyncDir}) {
    SCOPED_TRACE(FaultInjectionEnv::OpName(op));
    ASSERT_TRUE(WriteFileAtomically(&env_, path, old_bytes).ok());
    env_.FailNth(op, 1, op == Op::kSyncDir ? dir_ : "ckpt");
    absl::Status s = WriteFileAtomically(&env_, path, new_bytes);
    EXPECT_EQ(s.code(), absl::StatusCode::kInternal) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), "injected fault")) << s;
    // Only a failed folder sync leaves the new file visible (complete) until the power loss.
    EXPECT_EQ(Slurp(path), op == Op::kSyncDir ? new_bytes : old_bytes);
    EXPECT_EQ(Names(), std::vector<std::string>{"ckpt"});
    ASSERT_TRUE(env_.DropUnsyncedData().ok());
    EXPECT_EQ(Slurp(path), old_bytes);
    EXPECT_EQ(Names(), std::vector<std::string>{"ckpt"});
  }
  // Without a fault the new contents survive the power loss.
  ASSERT_TRUE(WriteFileAtomically(&env_, path, new_bytes).ok());
  ASSERT_TRUE(env_.DropUnsyncedData().ok());
  EXPECT_EQ(Slurp(path), new_bytes);
}

// The copy that predates the Env renamed without a folder sync: a power loss can undo it. The
// model catches exactly that.
TEST_F(FaultInjectionEnvTest, RenameWithoutFolderSyncIsNotDurable) {
  Write("m", "v1", /*sync=*/true);
  ASSERT_TRUE(env_.SyncDir(dir_).ok());
  Write("m.tmp", "v2", /*sync=*/true);
  ASSERT_TRUE(env_.RenameFile(P("m.tmp"), P("m")).ok());
  ASSERT_TRUE(env_.DropUnsyncedData().ok());
  EXPECT_EQ(Slurp(P("m")), "v1");
}

}  // namespace
}  // namespace nino
