// Byte-level language-model data from the King James Bible (Debian package bible-kjv).
//
// The text is what `bible -f "Genesis 1:1-Revelation 22:21"` prints (about 4.4 MB of ASCII, one
// verse a line, each starting with its reference, e.g. "Ge1:1 In the beginning God created the
// heaven and the earth."); tokens are its bytes (vocabulary 256).
#ifndef NINO_TRAINER_DATA_TEXT_CORPUS_H_
#define NINO_TRAINER_DATA_TEXT_CORPUS_H_

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace nino::trainer {

inline constexpr int64_t kByteVocabSize = 256;
// The whole KJV printed by `bible` is ~4.4 MB; less than this means something is wrong.
inline constexpr size_t kMinKjvBytes = 4'000'000;

// If `cache_path` exists and holds at least kMinKjvBytes it is read and returned. Otherwise runs
// `<bible_program> -f "Genesis 1:1-Revelation 22:21"` (via popen, with PATH lookup), checks it
// succeeded and printed at least kMinKjvBytes, writes the text to cache_path with
// WriteFileAtomically (common/env/write_file_atomically.h; missing parent folders are created) and
// returns it. Errors: NOT_FOUND if the program is missing (names the package bible-kjv),
// FAILED_PRECONDITION if it fails or prints too little, INTERNAL on cache I/O errors. The cache
// path must be non-empty. `bible_program` exists for tests.
absl::StatusOr<std::string> LoadKjvText(const std::string& cache_path,
                                        const std::string& bible_program = "bible");

// Bytes as int64 tokens in [0, 256).
torch::Tensor BytesToTokens(const std::string& text);

struct TextSplits {
  torch::Tensor train;  // int64 [n - n_val]
  torch::Tensor val;    // int64 [n_val], n_val = floor(n * val_fraction): the end of the text
};
// 0 <= val_fraction < 1 (else throws c10::Error).
TextSplits SplitText(const std::string& text, double val_fraction = 0.05);

// Random windows for training. Step s draws global_batch start offsets uniformly in
// [0, numel - context - 1] from std::mt19937_64 seeded with MixSeed(seed, s) (UniformBelow, see
// batch_sampler.h): row i = tokens[off_i, off_i + context] (context + 1 tokens), inputs = its
// first `context` tokens, targets = its last `context`. Every rank draws all offsets and takes
// the contiguous rows RankRange(global_batch, rank, world_size), so the ranks' parts concatenated
// in rank order are the world_size = 1 batch.
class LmBatcher {
 public:
  // tokens: 1-D int64 with at least context + 1 elements; context, global_batch >= 1;
  // 0 <= rank < world_size. Otherwise throws c10::Error.
  LmBatcher(torch::Tensor tokens, int64_t context, int64_t global_batch, uint64_t seed, int rank,
            int world_size);

  int64_t context() const { return context_; }
  int64_t global_batch() const { return batch_; }
  int64_t rank_batch_size() const { return rank_count_; }

  // The global batch's start offsets at `step` (int64 [global_batch]); step >= 0.
  torch::Tensor GlobalOffsets(int64_t step) const;
  // {inputs, targets}, each int64 [rank_batch_size(), context], contiguous.
  std::pair<torch::Tensor, torch::Tensor> RankBatch(int64_t step) const;

 private:
  torch::Tensor tokens_;
  int64_t context_;
  int64_t batch_;
  uint64_t seed_;
  int64_t rank_start_;
  int64_t rank_count_;
};

// Non-overlapping windows over `tokens` for evaluation (e.g. validation perplexity): window k
// has inputs tokens[kT, kT + T) and targets tokens[kT + 1, kT + T + 1) for the floor((n-1)/T)
// full windows, grouped into {inputs, targets} batches of up to `batch` rows [rows, T]. If
// include_tail and (n - 1) % T = r > 0, a last batch of one row [1, r] covers the rest, so every
// token but the first is a target exactly once. context, batch >= 1; n >= 2.
std::vector<std::pair<torch::Tensor, torch::Tensor>> EvalBatches(const torch::Tensor& tokens,
                                                                 int64_t context, int64_t batch,
                                                                 bool include_tail = true);

}  // namespace nino::trainer

#endif  // NINO_TRAINER_DATA_TEXT_CORPUS_H_
