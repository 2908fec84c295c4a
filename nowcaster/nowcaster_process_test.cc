// The nino_nowcaster binary as users run it: start (a repeated --nino_model serves every model
// given), become healthy, SIGTERM, exit 0.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "nowcaster/grpc_probe.h"
#include "tests/testing/child_process.h"
#include "tests/testing/synthetic_checkpoint.h"
#include "tests/testing/test_util.h"

namespace nino::nowcaster {
namespace {

using nino::testing::ChildProcess;
using nino::testing::NowcasterBinary;
using nino::testing::NumberAfter;

TEST(NowcasterProcess, ServesHealthAndExitsCleanlyOnSigterm) {
  // The daemon's start-up, health, /metrics and SIGTERM do not depend on the NiNo weights.
  const std::string ckpt =
      nino::testing::SharedSyntheticCheckpoint(nino::testing::SyntheticNiNo::kGnn);
  ASSERT_FALSE(ckpt.empty());
  ASSERT_TRUE(std::filesystem::exists(NowcasterBinary())) << NowcasterBinary();
  ChildProcess child({NowcasterBinary(), "--address=127.0.0.1:0", "--metrics_port=-1",
                      "--metrics_host=127.0.0.1", "--threads=1", "--lame_duck_ms=0",
                      "--shutdown_deadline_ms=2000", "--nino_model=nino_no_posw=" + ckpt,
                      "--nino_model", "second=" + ckpt});
  ASSERT_GT(child.pid(), 0);
  std::string log = child.ReadUntil("device ");
  const int port = NumberAfter(log, "listening on 127.0.0.1:");
  ASSERT_GT(port, 0) << "no address in the start-up log:\n" << log;
  const int metrics_port = NumberAfter(log, "metrics on http://127.0.0.1:");
  ASSERT_GT(metrics_port, 0) << "no metrics port in the start-up log:\n" << log;
  // --nino_model given twice serves both (abseil alone would keep only the last).
  EXPECT_NE(log.find("models: nino_no_posw=" + ckpt), std::string::npos) << log;
  EXPECT_NE(log.find(", second=" + ckpt), std::string::npos) << log;
  EXPECT_NE(log.find("device cpu"), std::string::npos) << log;
  EXPECT_NE(log.find("LibTorch threads 1"), std::string::npos) << log;

  auto channel =
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
  absl::StatusOr<ServingStatus> health;
  for (int i = 0; i < 100; ++i) {
    health = CheckHealth(channel, "nino.v1.Nowcaster", absl::Seconds(2));
    if (health.ok() && *health == ServingStatus::kServing) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(health.ok()) << health.status();
  ASSERT_EQ(*health, ServingStatus::kServing);

  // /metrics works in the real process (LibTorch and all its libraries loaded).
  const std::string metrics = nino::testing::HttpGet(metrics_port, "/metrics");
  EXPECT_NE(metrics.find("200 OK"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("nino_nowcaster_jobs 0"), std::string::npos) << metrics;

  ASSERT_EQ(kill(child.pid(), SIGTERM), 0);
  const int status = child.WaitExit(std::chrono::seconds(20));
  ASSERT_NE(status, -1) << "no exit within 20 s of SIGTERM";
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0);
  log = child.ReadUntil("stopped");
  EXPECT_NE(log.find("received SIGTERM"), std::string::npos) << log;
  EXPECT_NE(log.find("stopped"), std::string::npos) << log;
}

}  // namespace
}  // namespace nino::nowcaster
