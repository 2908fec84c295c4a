#include "nowcaster/work_queue.h"

#include <gtest/gtest.h>

#include <atomic>

#include "absl/synchronization/notification.h"

namespace nino::nowcaster {
namespace {

TEST(WorkQueue, RunsTasksOnWorkers) {
  std::atomic<int> ran{0};
  {
    WorkQueue q(2, 8);
    absl::Notification all;
    for (int i = 0; i < 8; ++i) {
      ASSERT_TRUE(q.Submit([&](bool run) {
                     if (run && ++ran == 8) all.Notify();
                   }).ok());
    }
    all.WaitForNotification();
  }
  EXPECT_EQ(ran.load(), 8);
}

TEST(WorkQueue, FullQueueIsResourceExhaustedAndStopAnswersWaiters) {
  std::atomic<int> depth{-1};
  WorkQueue q(1, 1, [&](int d) { depth = d; });
  absl::Notification started, release;
  ASSERT_TRUE(q.Submit([&](bool) {
                 started.Notify();
                 release.WaitForNotification();
               }).ok());
  started.WaitForNotification();  // the worker is busy
  std::atomic<int> waiting_result{-1};
  ASSERT_TRUE(q.Submit([&](bool run) { waiting_result = run ? 1 : 0; }).ok());
  EXPECT_EQ(q.pending(), 1);
  EXPECT_EQ(depth.load(), 1);
  absl::Status full = q.Submit([](bool) {});
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  // Stop while the worker is busy: the waiting task is answered with run = false.
  std::thread stopper([&] { q.Stop(); });
  while (waiting_result.load() == -1) std::this_thread::yield();
  EXPECT_EQ(waiting_result.load(), 0);
  EXPECT_EQ(depth.load(), 0);
  release.Notify();
  stopper.join();
  EXPECT_EQ(q.Submit([](bool) {}).code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace nino::nowcaster
