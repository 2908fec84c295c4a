#include "nowcaster/work_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

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

TEST(WorkQueue, CancelTakesAWaitingTaskOutAndCallsItOnce) {
  std::atomic<int> depth{-1};
  WorkQueue q(1, 4, [&](int d) { depth = d; });
  absl::Notification started, release;
  auto busy = q.SubmitWithTicket([&](bool) {
    started.Notify();
    release.WaitForNotification();
  });
  ASSERT_TRUE(busy.ok());
  started.WaitForNotification();
  std::atomic<int> calls{0}, runs{0};
  auto waiting = q.SubmitWithTicket([&](bool run) {
    ++calls;
    if (run) ++runs;
  });
  ASSERT_TRUE(waiting.ok());
  EXPECT_NE(*waiting, *busy);
  EXPECT_EQ(q.pending(), 1);
  EXPECT_TRUE(q.Cancel(*waiting));
  EXPECT_EQ(calls.load(), 1);  // with run = false, on this thread
  EXPECT_EQ(q.pending(), 0);
  EXPECT_EQ(depth.load(), 0);
  EXPECT_FALSE(q.Cancel(*waiting));  // gone
  EXPECT_FALSE(q.Cancel(*busy));     // a worker took it
  EXPECT_FALSE(q.Cancel(12345));     // unknown
  release.Notify();
  q.Stop();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(runs.load(), 0);
}

TEST(WorkQueue, BusyCountsWorkersRunningATask) {
  std::atomic<int> busy_seen{-1};
  WorkQueue q(2, 4, {}, [&](int b) { busy_seen = b; });
  EXPECT_EQ(q.busy(), 0);
  absl::Notification a_started, b_started, release;
  ASSERT_TRUE(q.Submit([&](bool) {
                 a_started.Notify();
                 release.WaitForNotification();
               }).ok());
  ASSERT_TRUE(q.Submit([&](bool) {
                 b_started.Notify();
                 release.WaitForNotification();
               }).ok());
  a_started.WaitForNotification();
  b_started.WaitForNotification();
  EXPECT_EQ(q.busy(), 2);
  EXPECT_EQ(busy_seen.load(), 2);
  release.Notify();
  while (q.busy() != 0) std::this_thread::yield();
  EXPECT_EQ(busy_seen.load(), 0);
}

}  // namespace
}  // namespace nino::nowcaster
