#include "trainer/data/batch_sampler.h"

#include <algorithm>
#include <cstring>

namespace nino::trainer {

uint64_t SplitMix64(uint64_t x) {
  uint64_t z = x + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t MixSeed(uint64_t seed, uint64_t stream) { return SplitMix64(SplitMix64(seed) ^ stream); }

uint64_t UniformBelow(std::mt19937_64& rng, uint64_t bound) {
  TORCH_CHECK(bound >= 1, "UniformBelow: bound must be >= 1");
  // 2^64 mod bound, computed in 64 bits: values below it would bias the modulo.
  const uint64_t threshold = (0 - bound) % bound;
  for (;;) {
    const uint64_t r = rng();
    if (r >= threshold) return r % bound;
  }
}

void FisherYatesShuffle(std::vector<int64_t>& v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(UniformBelow(rng, i));
    std::swap(v[i - 1], v[j]);
  }
}

std::pair<int64_t, int64_t> RankRange(int64_t total, int rank, int world_size) {
  TORCH_CHECK(world_size >= 1, "RankRange: world_size must be >= 1, got ", world_size);
  TORCH_CHECK(rank >= 0 && rank < world_size, "RankRange: rank ", rank, " outside [0, ",
              world_size, ")");
  TORCH_CHECK(total >= 0, "RankRange: total must be >= 0, got ", total);
  const int64_t base = total / world_size;
  const int64_t extra = total % world_size;
  const int64_t start = rank * base + std::min<int64_t>(rank, extra);
  const int64_t count = base + (rank < extra ? 1 : 0);
  return {start, count};
}

BatchSampler::BatchSampler(int64_t dataset_size, int64_t global_batch, uint64_t seed, int rank,
                           int world_size)
    : n_(dataset_size), batch_(global_batch), seed_(seed), rank_(rank), world_(world_size) {
  TORCH_CHECK(dataset_size >= 1, "BatchSampler: dataset_size must be >= 1, got ", dataset_size);
  TORCH_CHECK(global_batch >= 1, "BatchSampler: global_batch must be >= 1, got ", global_batch);
  TORCH_CHECK(world_size >= 1, "BatchSampler: world_size must be >= 1, got ", world_size);
  TORCH_CHECK(rank >= 0 && rank < world_size, "BatchSampler: rank ", rank, " outside [0, ",
              world_size, ")");
}

int64_t BatchSampler::global_batch_size(int64_t batch) const {
  TORCH_CHECK(batch >= 0 && batch < batches_per_epoch(), "BatchSampler: batch ", batch,
              " outside [0, ", batches_per_epoch(), ")");
  return std::min(batch_, n_ - batch * batch_);
}

int64_t BatchSampler::rank_batch_size(int64_t batch) const {
  return RankRange(global_batch_size(batch), rank_, world_).second;
}

std::shared_ptr<const std::vector<int64_t>> BatchSampler::Permutation(int64_t epoch) const {
  TORCH_CHECK(epoch >= 0, "BatchSampler: epoch must be >= 0, got ", epoch);
  {
    std::lock_guard<std::mutex> lock(cache_->mu);
    if (cache_->perm != nullptr && cache_->epoch == epoch) return cache_->perm;
  }
  auto perm = std::make_shared<std::vector<int64_t>>(static_cast<size_t>(n_));
  for (int64_t i = 0; i < n_; ++i) (*perm)[i] = i;
  std::mt19937_64 rng(MixSeed(seed_, static_cast<uint64_t>(epoch)));
  FisherYatesShuffle(*perm, rng);
  std::lock_guard<std::mutex> lock(cache_->mu);
  cache_->epoch = epoch;
  cache_->perm = perm;
  return perm;
}

torch::Tensor BatchSampler::Slice(int64_t epoch, int64_t start, int64_t count) const {
  const auto perm = Permutation(epoch);
  torch::Tensor out = torch::empty({count}, torch::kInt64);
  if (count > 0) {
    std::memcpy(out.data_ptr<int64_t>(), perm->data() + start, count * sizeof(int64_t));
  }
  return out;
}

torch::Tensor BatchSampler::EpochPermutation(int64_t epoch) const { return Slice(epoch, 0, n_); }

torch::Tensor BatchSampler::GlobalIndices(int64_t epoch, int64_t batch) const {
  const int64_t size = global_batch_size(batch);
  return Slice(epoch, batch * batch_, size);
}

torch::Tensor BatchSampler::RankIndices(int64_t epoch, int64_t batch) const {
  const auto [start, count] = RankRange(global_batch_size(batch), rank_, world_);
  return Slice(epoch, batch * batch_ + start, count);
}

std::pair<int64_t, int64_t> BatchSampler::Position(int64_t step, int64_t batches_per_epoch) {
  TORCH_CHECK(step >= 0, "BatchSampler::Position: step must be >= 0, got ", step);
  TORCH_CHECK(batches_per_epoch >= 1, "BatchSampler::Position: batches_per_epoch must be >= 1");
  return {step / batches_per_epoch, step % batches_per_epoch};
}

int64_t BatchSampler::Step(int64_t epoch, int64_t batch, int64_t batches_per_epoch) {
  TORCH_CHECK(batches_per_epoch >= 1, "BatchSampler::Step: batches_per_epoch must be >= 1");
  TORCH_CHECK(epoch >= 0 && batch >= 0 && batch < batches_per_epoch, "BatchSampler::Step: (",
              epoch, ", ", batch, ") is not a position with ", batches_per_epoch,
              " batches per epoch");
  return epoch * batches_per_epoch + batch;
}

}  // namespace nino::trainer
