// Tests for trainer/data/text_corpus.h: splits, LM batches (shapes, shift, rank parts, pinned
// offsets from an independent Python reference), evaluation windows, and LoadKjvText with the
// real `bible` program (skipped where bible-kjv is not installed) and with a missing program.
#include "trainer/data/text_corpus.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "trainer/data/batch_sampler.h"

namespace nino::trainer {
namespace {

std::string NewTempDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string tmpl =
      absl::StrCat(base != nullptr && *base != '\0' ? base : "/tmp", "/kjv_XXXXXX");
  EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
  return tmpl;
}

bool BibleInstalled() {
  return std::system("command -v bible >/dev/null 2>&1") == 0;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// 0, 1, 2, ... as tokens: a window's content tells where it starts.
torch::Tensor Ramp(int64_t n) { return torch::arange(n, torch::kInt64); }

TEST(SplitText, SizesAndContent) {
  std::string text;
  for (int i = 0; i < 1000; ++i) text.push_back(static_cast<char>(i % 256));
  const TextSplits s = SplitText(text);
  EXPECT_EQ(s.train.numel(), 950);
  EXPECT_EQ(s.val.numel(), 50);
  EXPECT_EQ(s.train.scalar_type(), torch::kInt64);
  EXPECT_EQ(s.train[0].item<int64_t>(), 0);
  EXPECT_EQ(s.train[255].item<int64_t>(), 255);  // bytes are unsigned
  EXPECT_EQ(s.val[0].item<int64_t>(), 950 % 256);
  EXPECT_EQ(s.val[49].item<int64_t>(), 999 % 256);
  const TextSplits odd = SplitText(std::string(1001, 'a'), 0.1);
  EXPECT_EQ(odd.val.numel(), 100);  // floor(100.1)
  EXPECT_EQ(odd.train.numel(), 901);
  const TextSplits none = SplitText("abc", 0.0);
  EXPECT_EQ(none.train.numel(), 3);
  EXPECT_EQ(none.val.numel(), 0);
  EXPECT_THROW(SplitText("abc", 1.0), c10::Error);
  EXPECT_THROW(SplitText("abc", -0.1), c10::Error);
}

TEST(LmBatcher, ShapesAndTargetsAreInputsShiftedByOne) {
  const torch::Tensor tokens = Ramp(1000);
  LmBatcher batcher(tokens, /*context=*/16, /*global_batch=*/8, /*seed=*/123, 0, 1);
  EXPECT_EQ(batcher.rank_batch_size(), 8);
  for (int64_t step : {0, 1, 5, 99}) {
    const auto [inputs, targets] = batcher.RankBatch(step);
    EXPECT_EQ(inputs.sizes(), (std::vector<int64_t>{8, 16}));
    EXPECT_EQ(targets.sizes(), (std::vector<int64_t>{8, 16}));
    EXPECT_EQ(inputs.scalar_type(), torch::kInt64);
    EXPECT_TRUE(inputs.is_contiguous());
    EXPECT_TRUE(targets.is_contiguous());
    EXPECT_TRUE(torch::equal(inputs.narrow(1, 1, 15), targets.narrow(1, 0, 15)));
    const torch::Tensor offsets = batcher.GlobalOffsets(step);
    for (int64_t r = 0; r < 8; ++r) {
      const int64_t off = offsets[r].item<int64_t>();
      ASSERT_GE(off, 0);
      ASSERT_LE(off + 16, 999);  // the target window ends inside the tokens
      EXPECT_TRUE(torch::equal(inputs[r], tokens.narrow(0, off, 16)));
      EXPECT_TRUE(torch::equal(targets[r], tokens.narrow(0, off + 1, 16)));
    }
  }
  // Deterministic per step, different across steps.
  EXPECT_TRUE(torch::equal(batcher.RankBatch(3).first, batcher.RankBatch(3).first));
  EXPECT_FALSE(torch::equal(batcher.RankBatch(3).first, batcher.RankBatch(4).first));
}

TEST(LmBatcher, PinnedOffsets) {
  // Python reference: mt19937_64(MixSeed(123, 5)), UniformBelow(1000 - 16) four times.
  LmBatcher batcher(Ramp(1000), 16, 4, 123, 0, 1);
  const torch::Tensor offsets = batcher.GlobalOffsets(5);
  EXPECT_TRUE(torch::equal(offsets, torch::tensor({497, 78, 590, 401}, torch::kInt64)))
      << offsets;
}

TEST(LmBatcher, OffsetsReachBothEnds) {
  // 20 tokens, context 4: offsets in [0, 15]; with many draws both ends appear.
  LmBatcher batcher(Ramp(20), 4, 64, 1, 0, 1);
  const torch::Tensor offsets = batcher.GlobalOffsets(0);
  EXPECT_EQ(offsets.min().item<int64_t>(), 0);
  EXPECT_EQ(offsets.max().item<int64_t>(), 15);
}

TEST(LmBatcher, RankPartsConcatenateToTheSingleRankBatch) {
  const torch::Tensor tokens = Ramp(5000);
  const int64_t B = 10;
  LmBatcher single(tokens, 32, B, 77, 0, 1);
  for (int world : {2, 3, 4}) {
    for (int64_t step : {0, 11}) {
      std::vector<torch::Tensor> ins, tgts;
      for (int r = 0; r < world; ++r) {
        LmBatcher part(tokens, 32, B, 77, r, world);
        EXPECT_EQ(part.rank_batch_size(), RankRange(B, r, world).second);
        auto [in, tg] = part.RankBatch(step);
        EXPECT_EQ(in.size(0), part.rank_batch_size());
        ins.push_back(in);
        tgts.push_back(tg);
      }
      const auto [want_in, want_tg] = single.RankBatch(step);
      EXPECT_TRUE(torch::equal(torch::cat(ins), want_in)) << "W=" << world << " step " << step;
      EXPECT_TRUE(torch::equal(torch::cat(tgts), want_tg)) << "W=" << world << " step " << step;
    }
  }
}

TEST(LmBatcher, RejectsBadArguments) {
  EXPECT_THROW(LmBatcher(Ramp(16), 16, 4, 0, 0, 1), c10::Error);  // needs context + 1 tokens
  EXPECT_NO_THROW(LmBatcher(Ramp(17), 16, 4, 0, 0, 1));
  EXPECT_THROW(LmBatcher(Ramp(100).to(torch::kInt32), 16, 4, 0, 0, 1), c10::Error);
  EXPECT_THROW(LmBatcher(Ramp(100).view({10, 10}), 4, 4, 0, 0, 1), c10::Error);
  EXPECT_THROW(LmBatcher(Ramp(100), 16, 4, 0, 2, 2), c10::Error);
  EXPECT_THROW(LmBatcher(Ramp(100), 0, 4, 0, 0, 1), c10::Error);
}

TEST(EvalBatches, NonOverlappingWindowsCoverEveryTargetOnce) {
  // n = 103, T = 10: 10 full windows (targets 1..100), tail of 2 (targets 101, 102).
  const torch::Tensor tokens = Ramp(103);
  const auto batches = EvalBatches(tokens, 10, 4);
  ASSERT_EQ(batches.size(), 4u);  // 4 + 4 + 2 windows, then the tail
  EXPECT_EQ(batches[0].first.sizes(), (std::vector<int64_t>{4, 10}));
  EXPECT_EQ(batches[2].first.sizes(), (std::vector<int64_t>{2, 10}));
  EXPECT_EQ(batches[3].first.sizes(), (std::vector<int64_t>{1, 2}));
  std::vector<int64_t> all_inputs, all_targets;
  for (const auto& [in, tg] : batches) {
    EXPECT_EQ(in.sizes(), tg.sizes());
    const torch::Tensor fi = in.flatten(), ft = tg.flatten();
    all_inputs.insert(all_inputs.end(), fi.data_ptr<int64_t>(), fi.data_ptr<int64_t>() + fi.numel());
    all_targets.insert(all_targets.end(), ft.data_ptr<int64_t>(),
                       ft.data_ptr<int64_t>() + ft.numel());
  }
  ASSERT_EQ(all_targets.size(), 102u);
  for (int64_t i = 0; i < 102; ++i) {
    EXPECT_EQ(all_inputs[i], i);
    EXPECT_EQ(all_targets[i], i + 1);
  }
  // Without the tail: full windows only.
  const auto no_tail = EvalBatches(tokens, 10, 4, /*include_tail=*/false);
  EXPECT_EQ(no_tail.size(), 3u);
  // Exact fit: n - 1 = 30 = 3 * T, no tail.
  const auto exact = EvalBatches(Ramp(31), 10, 8);
  ASSERT_EQ(exact.size(), 1u);
  EXPECT_EQ(exact[0].first.sizes(), (std::vector<int64_t>{3, 10}));
  // Fewer tokens than a window: only the tail.
  const auto tiny = EvalBatches(Ramp(5), 10, 8);
  ASSERT_EQ(tiny.size(), 1u);
  EXPECT_EQ(tiny[0].first.sizes(), (std::vector<int64_t>{1, 4}));
  EXPECT_THROW(EvalBatches(Ramp(1), 10, 8), c10::Error);
}

TEST(LoadKjvText, MissingProgramNamesThePackage) {
  const std::string cache = NewTempDir() + "/kjv.txt";
  auto r = LoadKjvText(cache, "nino-no-such-bible-program");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "bible-kjv")) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "nino-no-such-bible-program"))
      << r.status();
  struct stat st;
  EXPECT_NE(::stat(cache.c_str(), &st), 0) << "no cache may be written on failure";
}

TEST(LoadKjvText, ProgramThatPrintsTooLittle) {
  // `echo -f "Genesis ..."` succeeds but prints a few bytes.
  const std::string cache = NewTempDir() + "/kjv.txt";
  auto r = LoadKjvText(cache, "echo");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "bible-kjv")) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "printed only")) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "Genesis")) << r.status();  // the output
}

TEST(LoadKjvText, RunsBibleThenReadsTheCache) {
  if (!BibleInstalled()) {
    GTEST_SKIP() << "`bible` is not installed (Debian package bible-kjv); skipping";
  }
  const std::string cache = NewTempDir() + "/sub/dir/kjv.txt";  // parents are created
  auto first = LoadKjvText(cache);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_GT(first->size(), 4'000'000u);
  EXPECT_TRUE(absl::StartsWith(
      *first, "Ge1:1 In the beginning God created the heaven and the earth.\n"))
      << first->substr(0, 100);
  EXPECT_TRUE(absl::EndsWith(
      *first, "Rev22:21 The grace of our Lord Jesus Christ be with you all. Amen.\n"))
      << first->substr(first->size() - 100);
  EXPECT_EQ(ReadFile(cache), *first);
  // No temporary files left next to the cache.
  const std::string dir = cache.substr(0, cache.rfind('/'));
  EXPECT_EQ(std::system(absl::StrCat("test \"$(ls -A '", dir, "')\" = kjv.txt").c_str()), 0);

  // Second call reads the cache: prove it by changing the cached file (same size class) and
  // by passing a program that does not exist.
  std::string marked = *first;
  marked.replace(0, 5, "XX1:1");
  {
    std::ofstream out(cache, std::ios::binary | std::ios::trunc);
    out << marked;
  }
  auto second = LoadKjvText(cache, "nino-no-such-bible-program");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(*second, marked);

  // A short (broken) cache is rebuilt.
  {
    std::ofstream out(cache, std::ios::binary | std::ios::trunc);
    out << "stub";
  }
  auto third = LoadKjvText(cache);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(*third, *first);
  EXPECT_EQ(ReadFile(cache), *first);

  // The real corpus through the splitter and batcher.
  const TextSplits splits = SplitText(*first);
  EXPECT_EQ(splits.train.numel() + splits.val.numel(), static_cast<int64_t>(first->size()));
  EXPECT_EQ(splits.val.numel(), static_cast<int64_t>(first->size() / 20));
  EXPECT_LT(splits.train.max().item<int64_t>(), 128);  // ASCII
  LmBatcher batcher(splits.train, 256, 8, 0, 0, 1);
  const auto [in, tg] = batcher.RankBatch(0);
  EXPECT_EQ(in.sizes(), (std::vector<int64_t>{8, 256}));
}

TEST(LoadKjvText, EmptyCachePath) {
  auto r = LoadKjvText("");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace nino::trainer
