#include "proto/wire.h"

#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <vector>

namespace nino::wire {
namespace {

std::vector<float> Ramp(int n) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = 0.25f * i - 3.0f;
  return v;
}

TEST(PlanChunks, CoversThePayloadInOrder) {
  auto spans = PlanChunks(10, 4);
  ASSERT_TRUE(spans.ok()) << spans.status();
  ASSERT_EQ(spans->size(), 3u);
  EXPECT_EQ((*spans)[2].index, 2);
  EXPECT_EQ((*spans)[2].offset_bytes, 8);
  EXPECT_EQ((*spans)[2].size_bytes, 2);
  EXPECT_EQ(PlanChunks(8, 8)->size(), 1u);
  EXPECT_EQ(PlanChunks(0, 8).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanChunks(8, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Wire, SplitAndAssembleRoundTripsBitForBit) {
  const std::vector<float> values = Ramp(1001);  // 4004 bytes: chunks need not align to floats
  for (int64_t chunk_bytes : {1, 7, 64, 4003, 4004, 1 << 20}) {
    auto chunks = SplitState("job", "tok", 199, values, chunk_bytes);
    ASSERT_TRUE(chunks.ok()) << chunks.status();
    std::vector<float> out(values.size(), -1.0f);
    ChunkAssembler assembler(out.data(), out.size() * 4, chunk_bytes);
    for (const auto& c : *chunks) {
      EXPECT_EQ(c.total_bytes(), 4004);
      EXPECT_LE(c.data().size(), static_cast<size_t>(chunk_bytes));
      ASSERT_TRUE(assembler.Add(c).ok()) << assembler.Add(c);
    }
    ASSERT_TRUE(assembler.Finish().ok()) << assembler.Finish();
    EXPECT_TRUE(assembler.complete());
    EXPECT_EQ(assembler.job_id(), "job");
    EXPECT_EQ(assembler.step(), 199);
    EXPECT_EQ(std::memcmp(out.data(), values.data(), 4004), 0) << chunk_bytes;
  }
}

TEST(Wire, PredictionChunksCarryK) {
  const std::vector<float> values = Ramp(10);
  const absl::string_view payload = AsBytes(values);
  auto spans = *PlanChunks(payload.size(), 16);
  std::vector<float> out(10);
  ChunkAssembler assembler(out.data(), 40, 16);
  for (const auto& s : spans) {
    v1::PredictionChunk c = MakePredictionChunk("j", 999, 33, payload, s);
    ASSERT_TRUE(assembler.Add(c).ok());
  }
  EXPECT_TRUE(assembler.Finish().ok());
  EXPECT_EQ(assembler.k(), 33);
  EXPECT_EQ(out, values);
  // A chunk whose k differs from the stream's is rejected.
  ChunkAssembler second(out.data(), 40, 16);
  ASSERT_TRUE(second.Add(MakePredictionChunk("j", 999, 33, payload, spans[0])).ok());
  absl::Status s = second.Add(MakePredictionChunk("j", 999, 32, payload, spans[1]));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("k 32"), absl::string_view::npos) << s;
}

// Feeds chunks 0..n-1 of `chunks` with `mutate` applied to chunk `bad`; returns the first error.
absl::Status Feed(std::vector<v1::StateChunk> chunks, size_t bad,
                  const std::function<void(v1::StateChunk*)>& mutate, std::vector<float>* out,
                  int64_t max_chunk_bytes = 16) {
  mutate(&chunks[bad]);
  ChunkAssembler assembler(out->data(), out->size() * 4, max_chunk_bytes);
  for (const auto& c : chunks) {
    absl::Status s = assembler.Add(c);
    if (!s.ok()) {
      EXPECT_EQ(assembler.Add(c), s) << "errors are sticky";
      EXPECT_EQ(assembler.Finish(), s);
      return s;
    }
  }
  return assembler.Finish();
}

class WireErrors : public ::testing::Test {
 protected:
  void SetUp() override { chunks_ = *SplitState("job", "tok", 5, values_, 16); }
  void Expect(size_t bad, const std::function<void(v1::StateChunk*)>& mutate, absl::StatusCode code,
              absl::string_view needle) {
    std::vector<float> out(values_.size(), 0.0f);
    absl::Status s = Feed(chunks_, bad, mutate, &out);
    EXPECT_EQ(s.code(), code) << s;
    EXPECT_NE(s.message().find(needle), absl::string_view::npos) << s;
    // Nothing from the bad chunk or after it was written.
    for (size_t i = bad * 4; i < out.size(); ++i) ASSERT_EQ(out[i], 0.0f) << i;
  }
  std::vector<float> values_ = Ramp(20);  // 80 bytes: 5 chunks of 16
  std::vector<v1::StateChunk> chunks_;
};

TEST_F(WireErrors, CorruptedDataIsDataLoss) {
  Expect(
      2, [](v1::StateChunk* c) { (*c->mutable_data())[3] ^= 1; }, absl::StatusCode::kDataLoss,
      "chunk 2: crc32c mismatch");
  Expect(
      0, [](v1::StateChunk* c) { c->set_crc32c(c->crc32c() + 1); }, absl::StatusCode::kDataLoss,
      "crc32c");
}

TEST_F(WireErrors, ProtocolViolationsAreInvalidArgument) {
  using C = v1::StateChunk;
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  Expect(
      1, [](C* c) { c->set_offset_bytes(32); }, kInvalid, "chunk 1: offset_bytes 32, expected 16");
  Expect(
      1, [](C* c) { c->set_chunk_index(2); }, kInvalid, "chunk_index 2, expected 1");
  Expect(
      3, [](C* c) { c->set_step(6); }, kInvalid, "step 6 differs");
  Expect(
      3, [](C* c) { c->set_job_id("other"); }, kInvalid, "job_id 'other'");
  Expect(
      0, [](C* c) { c->set_total_bytes(84); }, kInvalid, "total_bytes 84, expected 80");
  Expect(
      2,
      [](C* c) {
        c->set_data("");
        c->set_crc32c(0);
      },
      kInvalid, "empty data");
  // A last chunk that runs past total_bytes (with a valid crc: overflow, not corruption).
  Expect(
      4,
      [](C* c) {
        std::string d = c->data() + "abcd";
        *c = MakeStateChunk("job", "tok", 5, std::string(64, 'x') + d, {4, 64, 20});
        c->set_total_bytes(80);
      },
      kInvalid, "chunk 4: data [64, 84) runs past total_bytes 80");
  // A chunk larger than the receiver's limit.
  Expect(
      0,
      [](C* c) {
        *c = MakeStateChunk("job", "tok", 5, std::string(80, 'x'), {0, 0, 20});
      },
      kInvalid, "chunk 0: data holds 20 bytes, more than max_chunk_bytes 16");
}

TEST(Wire, OverflowPastTotalAndTruncation) {
  std::vector<float> values = Ramp(5);  // 20 bytes
  std::vector<float> out(5);
  // One 24-byte chunk claiming total 20, with a large chunk limit: overflow.
  std::string big(24, 'z');
  v1::StateChunk c = MakeStateChunk("j", "t", 0, big, {0, 0, 24});
  c.set_total_bytes(20);
  ChunkAssembler a(out.data(), 20, 0);
  absl::Status s = a.Add(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("runs past total_bytes 20"), absl::string_view::npos) << s;
  // A stream that stops early is DATA_LOSS at Finish; one chunk too many is INVALID_ARGUMENT.
  auto chunks = *SplitState("j", "t", 0, values, 8);
  ChunkAssembler b(out.data(), 20, 8);
  ASSERT_TRUE(b.Add(chunks[0]).ok());
  s = b.Finish();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("after 8 of 20 bytes"), absl::string_view::npos) << s;
  ChunkAssembler d(out.data(), 20, 8);
  for (const auto& ch : chunks) ASSERT_TRUE(d.Add(ch).ok());
  v1::StateChunk extra = chunks.back();
  extra.set_chunk_index(3);
  EXPECT_EQ(d.Add(extra).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace nino::wire
