// Tests for trainer/data/batch_sampler.h. Pinned values come from an independent Python
// implementation of mt19937_64 (checked against the C++ standard's 10000th output),
// SplitMix64 and the Fisher-Yates / UniformBelow rules documented in the header.
#include "trainer/data/batch_sampler.h"

#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace nino::trainer {
namespace {

std::vector<int64_t> ToVector(const torch::Tensor& t) {
  EXPECT_EQ(t.scalar_type(), torch::kInt64);
  EXPECT_EQ(t.dim(), 1);
  const torch::Tensor c = t.contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

TEST(Rng, EngineAndMixerAreTheSpecifiedOnes) {
  std::mt19937_64 rng;  // default seed 5489
  rng.discard(9999);
  EXPECT_EQ(rng(), 9981545732273789042ULL);  // [rand.predef]
  EXPECT_EQ(MixSeed(42, 0), 6332618229526065668ULL);
  EXPECT_EQ(MixSeed(42, 1), 17532488217563185893ULL);
}

TEST(Rng, UniformBelowStaysInRange) {
  std::mt19937_64 rng(1);
  std::vector<int> counts(7, 0);
  for (int i = 0; i < 7000; ++i) {
    const uint64_t v = UniformBelow(rng, 7);
    ASSERT_LT(v, 7u);
    ++counts[v];
  }
  for (int c : counts) EXPECT_GT(c, 800);  // ~1000 each
  EXPECT_EQ(UniformBelow(rng, 1), 0u);
}

TEST(BatchSampler, PinnedPermutations) {
  // Identical on every platform / run: values from the Python reference implementation.
  EXPECT_EQ(ToVector(BatchSampler(10, 4, 42, 0, 1).EpochPermutation(0)),
            (std::vector<int64_t>{2, 0, 4, 7, 8, 3, 5, 1, 9, 6}));
  EXPECT_EQ(ToVector(BatchSampler(10, 4, 42, 0, 1).EpochPermutation(1)),
            (std::vector<int64_t>{2, 8, 7, 3, 6, 4, 0, 9, 5, 1}));
  EXPECT_EQ(ToVector(BatchSampler(20, 3, 7, 0, 1).EpochPermutation(3)),
            (std::vector<int64_t>{8, 2, 5, 14, 1, 6, 13, 4, 18, 11, 17, 10, 12, 7, 19, 9, 16, 15,
                                  0, 3}));
}

TEST(BatchSampler, EachEpochIsAPermutationAndEpochsDiffer) {
  const int64_t n = 1000;
  BatchSampler s(n, 64, 123, 0, 1);
  EXPECT_EQ(s.batches_per_epoch(), 16);  // ceil(1000 / 64)
  std::vector<std::vector<int64_t>> orders;
  for (int64_t epoch = 0; epoch < 4; ++epoch) {
    std::vector<int64_t> order;
    for (int64_t b = 0; b < s.batches_per_epoch(); ++b) {
      const std::vector<int64_t> idx = ToVector(s.GlobalIndices(epoch, b));
      EXPECT_EQ(static_cast<int64_t>(idx.size()), s.global_batch_size(b));
      order.insert(order.end(), idx.begin(), idx.end());
    }
    ASSERT_EQ(static_cast<int64_t>(order.size()), n);
    std::set<int64_t> seen(order.begin(), order.end());
    EXPECT_EQ(static_cast<int64_t>(seen.size()), n) << "epoch " << epoch;
    EXPECT_EQ(*seen.begin(), 0);
    EXPECT_EQ(*seen.rbegin(), n - 1);
    EXPECT_EQ(order, ToVector(s.EpochPermutation(epoch)));
    // Shuffled, not the identity.
    int fixed = 0;
    for (int64_t i = 0; i < n; ++i) fixed += order[i] == i;
    EXPECT_LT(fixed, 20) << "epoch " << epoch;
    for (const auto& prev : orders) EXPECT_NE(order, prev) << "epoch " << epoch;
    orders.push_back(order);
  }
}

TEST(BatchSampler, SameSeedSameOrderOtherSeedOther) {
  BatchSampler a(500, 32, 9, 0, 1);
  BatchSampler b(500, 32, 9, 0, 1);
  BatchSampler c(500, 32, 10, 0, 1);
  for (int64_t epoch : {0, 1, 7}) {
    EXPECT_TRUE(torch::equal(a.EpochPermutation(epoch), b.EpochPermutation(epoch)));
    EXPECT_FALSE(torch::equal(a.EpochPermutation(epoch), c.EpochPermutation(epoch)));
  }
  // Out-of-order access (cache misses) gives the same batches.
  const torch::Tensor e3 = a.GlobalIndices(3, 5);
  a.GlobalIndices(0, 0);
  EXPECT_TRUE(torch::equal(a.GlobalIndices(3, 5), e3));
  EXPECT_TRUE(torch::equal(b.GlobalIndices(3, 5), e3));
  // A copy shares the deterministic order.
  BatchSampler copy = a;
  EXPECT_TRUE(torch::equal(copy.GlobalIndices(3, 5), e3));
}

TEST(BatchSampler, RankPartsConcatenateToTheGlobalBatch) {
  // n = 103, B = 10: 11 batches, the last one has 3 rows (fewer than some world sizes).
  const int64_t n = 103;
  const int64_t B = 10;
  for (int world : {1, 2, 3, 4, 7}) {
    std::vector<BatchSampler> ranks;
    for (int r = 0; r < world; ++r) ranks.emplace_back(n, B, 5, r, world);
    ASSERT_EQ(ranks[0].batches_per_epoch(), 11);
    for (int64_t epoch : {0, 2}) {
      for (int64_t b = 0; b < ranks[0].batches_per_epoch(); ++b) {
        const int64_t gsize = ranks[0].global_batch_size(b);
        EXPECT_EQ(gsize, b < 10 ? 10 : 3);
        std::vector<int64_t> joined;
        int64_t prev_size = -1;
        for (int r = 0; r < world; ++r) {
          const std::vector<int64_t> part = ToVector(ranks[r].RankIndices(epoch, b));
          EXPECT_EQ(static_cast<int64_t>(part.size()), ranks[r].rank_batch_size(b));
          // As equal as possible, the first ranks larger.
          EXPECT_TRUE(part.size() == static_cast<size_t>(gsize / world) ||
                      part.size() == static_cast<size_t>(gsize / world + 1));
          if (prev_size >= 0) {
            EXPECT_LE(static_cast<int64_t>(part.size()), prev_size);
          }
          prev_size = static_cast<int64_t>(part.size());
          joined.insert(joined.end(), part.begin(), part.end());
        }
        EXPECT_EQ(joined, ToVector(ranks[0].GlobalIndices(epoch, b)))
            << "W=" << world << " epoch " << epoch << " batch " << b;
      }
    }
  }
}

TEST(BatchSampler, ExplicitSplitOfTenOverThree) {
  EXPECT_EQ(RankRange(10, 0, 3), (std::pair<int64_t, int64_t>{0, 4}));
  EXPECT_EQ(RankRange(10, 1, 3), (std::pair<int64_t, int64_t>{4, 3}));
  EXPECT_EQ(RankRange(10, 2, 3), (std::pair<int64_t, int64_t>{7, 3}));
  EXPECT_EQ(RankRange(2, 2, 3), (std::pair<int64_t, int64_t>{2, 0}));
  BatchSampler r1(10, 10, 0, 1, 3);
  const std::vector<int64_t> global = ToVector(r1.GlobalIndices(0, 0));
  EXPECT_EQ(ToVector(r1.RankIndices(0, 0)), std::vector<int64_t>(global.begin() + 4,
                                                                  global.begin() + 7));
}

TEST(BatchSampler, LastPartialBatch) {
  BatchSampler s(55000, 128, 0, 0, 1);
  EXPECT_EQ(s.batches_per_epoch(), 430);  // 429 * 128 = 54912, 88 left
  EXPECT_EQ(s.global_batch_size(428), 128);
  EXPECT_EQ(s.global_batch_size(429), 88);
  EXPECT_EQ(s.GlobalIndices(0, 429).numel(), 88);
  BatchSampler exact(256, 128, 0, 0, 1);
  EXPECT_EQ(exact.batches_per_epoch(), 2);
  EXPECT_EQ(exact.global_batch_size(1), 128);
  BatchSampler tiny(5, 128, 0, 0, 1);
  EXPECT_EQ(tiny.batches_per_epoch(), 1);
  EXPECT_EQ(tiny.global_batch_size(0), 5);
  EXPECT_THROW(s.GlobalIndices(0, 430), c10::Error);
  EXPECT_THROW(s.GlobalIndices(-1, 0), c10::Error);
}

TEST(BatchSampler, PositionAndStep) {
  EXPECT_EQ(BatchSampler::Position(0, 430), (std::pair<int64_t, int64_t>{0, 0}));
  EXPECT_EQ(BatchSampler::Position(429, 430), (std::pair<int64_t, int64_t>{0, 429}));
  EXPECT_EQ(BatchSampler::Position(430, 430), (std::pair<int64_t, int64_t>{1, 0}));
  EXPECT_EQ(BatchSampler::Position(10000, 430), (std::pair<int64_t, int64_t>{23, 110}));
  for (int64_t step : {0, 1, 429, 430, 431, 9999, 123456}) {
    const auto [epoch, batch] = BatchSampler::Position(step, 430);
    EXPECT_EQ(BatchSampler::Step(epoch, batch, 430), step);
  }
  EXPECT_THROW(BatchSampler::Position(-1, 430), c10::Error);
  EXPECT_THROW(BatchSampler::Step(0, 430, 430), c10::Error);
}

TEST(BatchSampler, RejectsBadArguments) {
  EXPECT_THROW(BatchSampler(0, 4, 0, 0, 1), c10::Error);
  EXPECT_THROW(BatchSampler(10, 0, 0, 0, 1), c10::Error);
  EXPECT_THROW(BatchSampler(10, 4, 0, 1, 1), c10::Error);
  EXPECT_THROW(BatchSampler(10, 4, 0, -1, 2), c10::Error);
  EXPECT_THROW(BatchSampler(10, 4, 0, 0, 0), c10::Error);
}

}  // namespace
}  // namespace nino::trainer
