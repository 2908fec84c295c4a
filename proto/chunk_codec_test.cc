#include "proto/chunk_codec.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace nino::wire {
namespace {

std::vector<float> Ramp(int n) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = 0.25f * static_cast<float>(i) - 3.0f;
  return v;
}

// A ByteBuffer holding `bytes` cut into slices of `piece` bytes (gRPC hands a receiver
// whatever slicing the transport produced). gRPC merges slices of up to 23 bytes into their
// neighbours; larger ones stay separate.
grpc::ByteBuffer Sliced(const std::string& bytes, size_t piece) {
  std::vector<grpc::Slice> slices;
  for (size_t i = 0; i < bytes.size(); i += piece) {
    slices.emplace_back(bytes.data() + i, std::min(piece, bytes.size() - i));
  }
  return grpc::ByteBuffer(slices.data(), slices.size());
}

std::shared_ptr<const void> Keep(const std::vector<float>& v) {
  return std::shared_ptr<const void>(&v, [](const void*) {});
}

TEST(StateChunkFrameTest, BytesEqualProtobufSerialisation) {
  const std::vector<float> values = Ramp(1000);
  const absl::string_view payload = AsBytes(values);
  auto spans = PlanChunks(static_cast<int64_t>(payload.size()), 1000);  // not a multiple of 4
  ASSERT_TRUE(spans.ok());
  for (int64_t step : {int64_t{0}, int64_t{200}, int64_t{-5}}) {
    for (const ChunkSpan& span : *spans) {
      const std::string expected =
          MakeStateChunk("job-1", "tok", step, payload, span).SerializeAsString();
      const std::string got =
          StateChunkFrame::Encode("job-1", "tok", step, payload, span, Keep(values)).ToString();
      EXPECT_EQ(got, expected) << "step " << step << " chunk " << span.index;
    }
  }
  // Empty job id and token are left out, as protobuf does.
  const ChunkSpan first = (*spans)[0];
  EXPECT_EQ(StateChunkFrame::Encode("", "", 7, payload, first, Keep(values)).ToString(),
            MakeStateChunk("", "", 7, payload, first).SerializeAsString());
}

TEST(StateChunkFrameTest, DataIsNotCopiedAndTheKeepaliveIsReleased) {
  auto values = std::make_shared<std::vector<float>>(Ramp(64));
  std::weak_ptr<std::vector<float>> watch = values;
  const absl::string_view payload = AsBytes(*values);
  {
    StateChunkFrame frame = StateChunkFrame::Encode("j", "t", 1, payload, {0, 0, 256}, values);
    values.reset();
    EXPECT_FALSE(watch.expired()) << "the frame must keep the payload alive";
    std::vector<grpc::Slice> slices;
    ASSERT_TRUE(frame.buffer().Dump(&slices).ok());
    bool points_into_payload = false;
    for (const grpc::Slice& s : slices) {
      points_into_payload |= reinterpret_cast<const char*>(s.begin()) == payload.data();
    }
    EXPECT_TRUE(points_into_payload) << "the data slice should refer to the snapshot itself";
    grpc::ByteBuffer copy = frame.buffer();  // what gRPC's Serialize does
    (void)copy;
  }
  EXPECT_TRUE(watch.expired()) << "the keepalive must be dropped with the last slice";
}

TEST(ReceivedStateChunkTest, ParsesProtobufMessagesAcrossAnySlicing) {
  const std::vector<float> values = Ramp(300);
  const absl::string_view payload = AsBytes(values);
  const v1::StateChunk chunk = MakeStateChunk("job-x", "secret", 400, payload, {2, 400, 800});
  const std::string bytes = chunk.SerializeAsString();
  for (size_t piece : {size_t{24}, size_t{25}, size_t{31}, size_t{64}, bytes.size()}) {
    ReceivedStateChunk got;
    ASSERT_TRUE(got.Parse(Sliced(bytes, piece)).ok()) << piece;
    EXPECT_EQ(got.job_id(), "job-x");
    EXPECT_EQ(got.job_token(), "secret");
    EXPECT_EQ(got.step(), 400);
    EXPECT_EQ(got.chunk_index(), 2);
    EXPECT_EQ(got.offset_bytes(), 400);
    EXPECT_EQ(got.total_bytes(), static_cast<int64_t>(payload.size()));
    EXPECT_EQ(got.crc32c(), chunk.crc32c());
    EXPECT_EQ(got.data_size(), 800);
    EXPECT_EQ(got.DataAsString(), chunk.data());
    EXPECT_GE(got.data_pieces().size(), 800 / piece) << "data should stay in the received slices";
  }
}

TEST(ReceivedStateChunkTest, AcceptsAnyFieldOrderUnknownFieldsAndLastWins) {
  // Hand-written wire bytes: total_bytes first, an unknown varint, fixed64, fixed32 and
  // length-delimited field, job_id twice (the last one counts), negative step.
  std::string m;
  m += "\x30\x08";                                           // total_bytes = 8
  m += std::string("\xa0\x01\x05", 3);                       // field 20 varint 5 (unknown)
  m += "\x0a\x03old";                                        // job_id = "old"
  m += std::string("\xa9\x01", 2) + std::string(8, '\x01');  // field 21 fixed64 (unknown)
  m += std::string("\xb2\x01\x02zz", 5);                     // field 22 bytes (unknown)
  m += std::string("\xbd\x01", 2) + std::string(4, '\x02');  // field 23 fixed32 (unknown)
  m += "\x3a\x08" + std::string("abcdefgh");                 // data
  m += "\x0a\x03new";                                        // job_id again
  m += std::string("\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11);  // step = -1
  m += std::string("\x45\x78\x56\x34\x12", 5);                           // crc32c = 0x12345678
  ReceivedStateChunk got;
  ASSERT_TRUE(got.ParseBytes(m).ok());
  EXPECT_EQ(got.job_id(), "new");
  EXPECT_EQ(got.step(), -1);
  EXPECT_EQ(got.total_bytes(), 8);
  EXPECT_EQ(got.crc32c(), 0x12345678u);
  EXPECT_EQ(got.DataAsString(), "abcdefgh");
  // Protobuf reads the same bytes the same way.
  v1::StateChunk reference;
  ASSERT_TRUE(reference.ParseFromString(m));
  EXPECT_EQ(reference.job_id(), got.job_id());
  EXPECT_EQ(reference.step(), got.step());
  EXPECT_EQ(reference.crc32c(), got.crc32c());
}

TEST(ReceivedStateChunkTest, RefusesMalformedMessagesAndIsLeftEmpty) {
  const std::vector<float> values = Ramp(16);
  const std::string bytes =
      MakeStateChunk("job", "tok", 3, AsBytes(values), {0, 0, 64}).SerializeAsString();
  // Every truncation either ends on a field boundary (protobuf accepts it too) or is refused.
  for (size_t n = 0; n < bytes.size(); ++n) {
    const std::string cut = bytes.substr(0, n);
    ReceivedStateChunk got;
    v1::StateChunk reference;
    const bool ok = got.ParseBytes(cut).ok();
    EXPECT_EQ(ok, reference.ParseFromString(cut)) << "prefix of " << n << " bytes";
    if (!ok) {
      EXPECT_EQ(got.data_size(), 0);
      EXPECT_TRUE(got.job_id().empty());
    }
  }
  ReceivedStateChunk got;
  absl::Status s = got.ParseBytes(std::string("\x3a\x10short", 7));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("field 7 declares 16 bytes"), std::string::npos) << s;
  EXPECT_EQ(got.ParseBytes(std::string("\x00\x01", 2)).code(),
            absl::StatusCode::kInvalidArgument);  // field number 0
  EXPECT_EQ(got.ParseBytes(std::string("\x0b", 1)).code(),
            absl::StatusCode::kInvalidArgument);  // wire type 3 (group)
  EXPECT_EQ(got.ParseBytes(std::string(11, '\xff')).code(),
            absl::StatusCode::kInvalidArgument);  // varint longer than 10 bytes
}

TEST(ReceivedStateChunkTest, CodecReportsParseErrorsThroughTheChunk) {
  grpc::ByteBuffer bad = Sliced(std::string("\x3a\x10short", 7), 3);
  ReceivedStateChunk got;
  grpc::Status s = grpc::SerializationTraits<ReceivedStateChunk>::Deserialize(&bad, &got);
  EXPECT_TRUE(s.ok()) << "the stream must not end silently on a bad message";
  EXPECT_EQ(got.parse_status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ChunkAssemblerPiecesTest, FramesRoundTripIntoTheBufferWithFiniteCheck) {
  const std::vector<float> values = Ramp(1001);
  const absl::string_view payload = AsBytes(values);
  auto spans = PlanChunks(static_cast<int64_t>(payload.size()), 999);  // floats straddle chunks
  ASSERT_TRUE(spans.ok());
  std::vector<float> out(values.size(), -1.0f);
  ChunkAssembler assembler(out.data(), static_cast<int64_t>(payload.size()), 999,
                           /*check_finite=*/true);
  for (const ChunkSpan& span : *spans) {
    const std::string bytes =
        StateChunkFrame::Encode("j", "t", 5, payload, span, Keep(values)).ToString();
    ReceivedStateChunk chunk;
    ASSERT_TRUE(chunk.Parse(Sliced(bytes, 13)).ok());
    ASSERT_TRUE(assembler.Add(chunk.fields()).ok());
  }
  ASSERT_TRUE(assembler.Finish().ok());
  EXPECT_EQ(out, values);
}

TEST(ChunkAssemblerPiecesTest, FiniteCheckNamesTheValueEvenAcrossAChunkBoundary) {
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    std::vector<float> values = Ramp(100);
    values[49] = bad;  // bytes 196..199: chunk 0 ends at byte 198
    const absl::string_view payload = AsBytes(values);
    auto spans = PlanChunks(static_cast<int64_t>(payload.size()), 198);
    ASSERT_TRUE(spans.ok());
    std::vector<float> out(values.size());
    ChunkAssembler assembler(out.data(), static_cast<int64_t>(payload.size()), 0, true);
    EXPECT_TRUE(assembler.Add(MakeStateChunk("j", "t", 1, payload, (*spans)[0])).ok());
    absl::Status s = assembler.Add(MakeStateChunk("j", "t", 1, payload, (*spans)[1]));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("chunk 1: data holds a NaN or Inf (value 49)"), std::string::npos)
        << s;
    EXPECT_EQ(assembler.Finish().code(), absl::StatusCode::kInvalidArgument);
  }
  // Without the check, non-finite values pass (predictions are checked by their receiver).
  std::vector<float> values = Ramp(4);
  values[2] = std::nanf("");
  std::vector<float> out(4);
  ChunkAssembler plain(out.data(), 16, 0);
  EXPECT_TRUE(plain.Add(MakeStateChunk("j", "t", 1, AsBytes(values), {0, 0, 16})).ok());
}

// A chunk size PlanChunks refuses: the call is refused before anything is sent, with
// PlanChunks' own code and message (passed on, not remapped).
TEST(PutStateZeroCopyTest, ABadChunkSizeKeepsPlanChunksCodeAndSendsNothing) {
  auto channel = grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials());
  grpc::ClientContext ctx;
  v1::PutStateResponse response;
  const std::string payload(64, 'x');
  const grpc::Status s = PutStateZeroCopy(channel.get(), &ctx, "job", "token", 199, payload,
                                          /*max_chunk_bytes=*/0, nullptr, &response);
  const absl::StatusOr<std::vector<ChunkSpan>> want = PlanChunks(64, 0);
  ASSERT_FALSE(want.ok());
  EXPECT_EQ(static_cast<int>(s.error_code()), static_cast<int>(want.status().code()));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), want.status().message());
  EXPECT_EQ(channel->GetState(/*try_to_connect=*/false), GRPC_CHANNEL_IDLE) << "no call was made";
}

}  // namespace
}  // namespace nino::wire
