// The test library itself: each helper does what its contract says, on loopback, in bounded time.
#include "tests/testing/test_util.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "common/nino/nino_model.h"
#include "nowcaster/grpc_probe.h"
#include "tests/testing/child_process.h"
#include "tests/testing/loopback_nowcaster.h"
#include "tests/testing/synthetic_checkpoint.h"

namespace nino::testing {
namespace {
namespace fs = std::filesystem;

TEST(SharedDir, TheEnvironmentWinsAndMissingFilesAreEmpty) {
  const char* old = std::getenv("NINO_SHARED_DIR");
  const std::string saved = old ? old : "";
  const std::string dir = MakeTestDir("shared");
  ASSERT_TRUE(WriteFile(dir + "/present.txt", "x"));
  setenv("NINO_SHARED_DIR", dir.c_str(), 1);
  EXPECT_EQ(SharedDir(), dir);
  EXPECT_EQ(SharedPath("present.txt"), dir + "/present.txt");
  EXPECT_EQ(SharedPath("reference/checkpoints/absent.pt"), "");
  if (old) {
    setenv("NINO_SHARED_DIR", saved.c_str(), 1);
  } else {
    unsetenv("NINO_SHARED_DIR");
  }
}

TEST(Ports, AFreePortCanBeBoundAndAListeningSocketAcceptsConnections) {
  const int port = FreePort();
  ASSERT_GT(port, 0);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << "port " << port;
  close(fd);

  LoopbackSocket hole(/*listen_on=*/true);
  ASSERT_GT(hole.port, 0);
  const int c = socket(AF_INET, SOCK_STREAM, 0);
  a.sin_port = htons(static_cast<uint16_t>(hole.port));
  EXPECT_EQ(connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  close(c);
  EXPECT_EQ(LoopbackAddress(hole.port), "127.0.0.1:" + std::to_string(hole.port));
}

TEST(MakeTestDir, EachCallIsANewEmptyFolderUnderTheTestTempDir) {
  const std::string a = MakeTestDir("x"), b = MakeTestDir("x");
  ASSERT_FALSE(a.empty());
  EXPECT_NE(a, b);
  EXPECT_EQ(a.rfind(::testing::TempDir(), 0), 0u) << a;
  EXPECT_TRUE(fs::is_empty(a));
  ASSERT_TRUE(WriteFile(a + "/f", "bytes\n"));
  EXPECT_EQ(ReadFile(a + "/f"), "bytes\n");
  EXPECT_EQ(ReadFile(a + "/missing"), "");
}

TEST(HttpGet, NothingListeningAndASilentServerAreBoundedAnswers) {
  EXPECT_EQ(HttpGet(FreePort(), "/metrics"), "connect failed");
  LoopbackSocket hole(/*listen_on=*/true);  // accepts at the kernel level, never answers
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(HttpGet(hole.port, "/metrics", "", /*timeout_ms=*/300), "");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

TEST(SyntheticCheckpoint, BothKindsLoadWithTheirLayoutAndTheSeedFixesTheWeights) {
  const std::string dir = MakeTestDir("synthetic");
  for (SyntheticNiNo kind : {SyntheticNiNo::kGnn, SyntheticNiNo::kWnn}) {
    auto a = WriteSyntheticCheckpoint(dir + "/a.pt", kind, /*seed=*/1, /*hid=*/16);
    auto b = WriteSyntheticCheckpoint(dir + "/b.pt", kind, /*seed=*/1, /*hid=*/16);
    auto c = WriteSyntheticCheckpoint(dir + "/c.pt", kind, /*seed=*/2, /*hid=*/16);
    ASSERT_TRUE(a.ok() && b.ok() && c.ok()) << a.status() << b.status() << c.status();
    auto model = NiNoModel::Load(*a);
    ASSERT_TRUE(model.ok()) << model.status();
    EXPECT_EQ(model->config().gnn, kind == SyntheticNiNo::kGnn);
    EXPECT_EQ(model->config().hid, 16);
    EXPECT_FALSE(model->config().wte_pos_enc);
    EXPECT_EQ(ReadFile(*a), ReadFile(*b));
    EXPECT_NE(ReadFile(*a), ReadFile(*c));
  }
  const std::string shared = SharedSyntheticCheckpoint(SyntheticNiNo::kWnn);
  EXPECT_EQ(SharedSyntheticCheckpoint(SyntheticNiNo::kWnn), shared) << "written once";
  EXPECT_TRUE(NiNoModel::Load(shared).ok());
}

TEST(LoopbackNowcaster, ServesOnLoopbackWithTheSyntheticModelAndRefusesOtherAddresses) {
  nowcaster::NowcasterOptions o = LoopbackNowcasterOptions();
  o.metrics_port = nowcaster::kAnyPort;
  o.metrics_host = "127.0.0.1";
  auto server = StartLoopbackNowcaster(o);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ(*nowcaster::CheckHealth(LoopbackChannel((*server)->port()), "", absl::Seconds(5)),
            nowcaster::ServingStatus::kServing);
  ASSERT_NE((*server)->models().Find("nino_mlp"), nullptr);
  const std::string metrics = HttpGet((*server)->metrics_port(), "/metrics");
  EXPECT_NE(metrics.find("200 OK"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("nino_nowcaster_jobs 0"), std::string::npos) << metrics;
  (*server)->Shutdown();

  o = LoopbackNowcasterOptions();
  o.address = "0.0.0.0:0";
  EXPECT_EQ(StartLoopbackNowcaster(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ChildProcess, ReadingASilentChildEndsAtItsDeadline) {
  ChildProcess child({"/bin/sleep", "30"});
  ASSERT_GT(child.pid(), 0);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(child.ReadUntil("never printed", std::chrono::seconds(1)), "");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  EXPECT_EQ(NumberAfter("listening on 127.0.0.1:4711\n", "listening on 127.0.0.1:"), 4711);
  EXPECT_EQ(NumberAfter("no port here", "listening on 127.0.0.1:"), 0);
}

}  // namespace
}  // namespace nino::testing
