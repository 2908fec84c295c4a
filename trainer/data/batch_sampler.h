// Deterministic, epoch-shuffled mini-batches for data-parallel training.
//
// Epoch e visits the dataset in the order of a permutation drawn by our own Fisher-Yates shuffle
// from std::mt19937_64 seeded with MixSeed(seed, e). Both the engine and the shuffle (including
// the bounded-integer draw, see UniformBelow) are fully specified here, so every rank, process,
// compiler and standard library computes the same order (std::shuffle and
// std::uniform_int_distribution are implementation-defined, torch's RNG is not used).
//
// Global batch b of an epoch is permutation[b * B, min((b + 1) * B, n)) (the last partial batch
// is kept). It is split into world_size contiguous parts as equal as possible, the first
// (size % W) ranks getting one extra (RankRange), so the ranks' parts concatenated in rank order
// are exactly the global batch. With a small last batch some ranks may get an empty part; a
// data-parallel trainer should then weight each rank's mean loss / gradient by its part size.
#ifndef NINO_TRAINER_DATA_BATCH_SAMPLER_H_
#define NINO_TRAINER_DATA_BATCH_SAMPLER_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <utility>
#include <vector>

namespace nino::trainer {

// SplitMix64 finaliser (Steele et al.): a bijective 64-bit mixer.
uint64_t SplitMix64(uint64_t x);
// The seed of stream `stream` (an epoch, a step) of a run seeded with `seed`:
// SplitMix64(SplitMix64(seed) ^ stream).
uint64_t MixSeed(uint64_t seed, uint64_t stream);
// Uniform integer in [0, bound) from rng, unbiased (rejection of the low 2^64 mod bound values,
// then modulo). bound >= 1.
uint64_t UniformBelow(std::mt19937_64& rng, uint64_t bound);
// In-place Fisher-Yates: for i = n-1 .. 1, swap(v[i], v[UniformBelow(rng, i + 1)]).
void FisherYatesShuffle(std::vector<int64_t>& v, std::mt19937_64& rng);

// Rank `rank`'s contiguous part of `total` items split over `world_size` ranks:
// {start, count}, count = total / W + (rank < total % W ? 1 : 0).
std::pair<int64_t, int64_t> RankRange(int64_t total, int rank, int world_size);

class BatchSampler {
 public:
  // dataset_size >= 1, global_batch >= 1, world_size >= 1, 0 <= rank < world_size; otherwise
  // throws c10::Error (TORCH_CHECK).
  BatchSampler(int64_t dataset_size, int64_t global_batch, uint64_t seed, int rank,
               int world_size);

  int64_t dataset_size() const { return n_; }
  int64_t global_batch() const { return batch_; }
  int rank() const { return rank_; }
  int world_size() const { return world_; }
  // ceil(n / B); the last batch may be partial.
  int64_t batches_per_epoch() const { return (n_ + batch_ - 1) / batch_; }
  // Rows of global batch `batch` (B, or the remainder for the last one).
  int64_t global_batch_size(int64_t batch) const;
  // This rank's part of global batch `batch`: RankRange(global_batch_size(batch), rank, W).
  int64_t rank_batch_size(int64_t batch) const;

  // The epoch's permutation of [0, n) (int64, [n]).
  torch::Tensor EpochPermutation(int64_t epoch) const;
  // int64 [global_batch_size(batch)] dataset indices of global batch `batch` of `epoch`.
  torch::Tensor GlobalIndices(int64_t epoch, int64_t batch) const;
  // int64 [rank_batch_size(batch)]: this rank's contiguous part of GlobalIndices(epoch, batch).
  torch::Tensor RankIndices(int64_t epoch, int64_t batch) const;

  // Global step <-> (epoch, batch within the epoch). step >= 0, batches_per_epoch >= 1.
  static std::pair<int64_t, int64_t> Position(int64_t step, int64_t batches_per_epoch);
  static int64_t Step(int64_t epoch, int64_t batch, int64_t batches_per_epoch);

 private:
  std::shared_ptr<const std::vector<int64_t>> Permutation(int64_t epoch) const;
  torch::Tensor Slice(int64_t epoch, int64_t start, int64_t count) const;

  int64_t n_;
  int64_t batch_;
  uint64_t seed_;
  int rank_;
  int world_;
  // The last epoch's permutation (consecutive batches reuse it). Thread-safe; copies of a
  // sampler share it (it is a pure function of (seed, epoch, n), so sharing is harmless).
  struct Cache {
    std::mutex mu;
    int64_t epoch = -1;
    std::shared_ptr<const std::vector<int64_t>> perm;
  };
  std::shared_ptr<Cache> cache_ = std::make_shared<Cache>();
};

}  // namespace nino::trainer

#endif  // NINO_TRAINER_DATA_BATCH_SAMPLER_H_
