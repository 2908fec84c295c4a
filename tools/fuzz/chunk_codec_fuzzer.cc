// libFuzzer target: the snapshot chunk codec (proto/chunk_codec.h, proto/wire.h).
//
// Input: a 3-byte header, then up to 64 length-prefixed messages.
//   byte 0      bit 0: check_finite; bit 1: the messages are PredictionChunks (protobuf
//               parser, as the client assembles predictions), else StateChunks (the server's
//               zero-copy ReceivedStateChunk parser); bits 2..7: max_chunk_bytes / 16
//               (0 = no limit)
//   bytes 1..2  little-endian uint16: the assembler's buffer holds this + 1 bytes
//   then        [uint16 little-endian length][message bytes], repeated
// Every message is parsed and added to one ChunkAssembler, then Finish() is called.
//
// Oracles beyond the sanitizers:
//  * ReceivedStateChunk parses the same message identically from one contiguous piece and
//    from three gRPC slices;
//  * where protobuf's generated StateChunk parser also accepts the message, both agree on
//    every field;
//  * StateChunkFrame::Encode of a parsed chunk gives exactly protobuf's serialisation of the
//    same fields, and parses back to them;
//  * a chunk the assembler rejects (other than for a non-finite value) leaves the buffer
//    unchanged, and a complete stream has received exactly the buffer's size.
#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "nino/v1/nowcaster.pb.h"
#include "proto/chunk_codec.h"
#include "proto/wire.h"

namespace {

using nino::wire::ChunkAssembler;
using nino::wire::ReceivedStateChunk;

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (0)

bool SameFields(const ReceivedStateChunk& a, const ReceivedStateChunk& b) {
  return a.job_id() == b.job_id() && a.job_token() == b.job_token() && a.step() == b.step() &&
         a.chunk_index() == b.chunk_index() && a.offset_bytes() == b.offset_bytes() &&
         a.total_bytes() == b.total_bytes() && a.crc32c() == b.crc32c() &&
         a.data_size() == b.data_size() && a.DataAsString() == b.DataAsString();
}

bool SameFields(const ReceivedStateChunk& a, const nino::v1::StateChunk& b) {
  return a.job_id() == b.job_id() && a.job_token() == b.job_token() && a.step() == b.step() &&
         a.chunk_index() == b.chunk_index() && a.offset_bytes() == b.offset_bytes() &&
         a.total_bytes() == b.total_bytes() && a.crc32c() == b.crc32c() &&
         a.DataAsString() == b.data();
}

// The message as three gRPC slices (cut at a third and two thirds).
grpc::ByteBuffer ThreeSlices(const std::string& msg) {
  const size_t a = msg.size() / 3, b = 2 * msg.size() / 3;
  grpc::Slice slices[3] = {grpc::Slice(msg.data(), a), grpc::Slice(msg.data() + a, b - a),
                           grpc::Slice(msg.data() + b, msg.size() - b)};
  return grpc::ByteBuffer(slices, 3);
}

void CheckStateChunk(const std::string& msg, const ReceivedStateChunk& chunk) {
  ReceivedStateChunk sliced;
  const absl::Status sliced_status = sliced.Parse(ThreeSlices(msg));
  FUZZ_CHECK(sliced_status.ok());
  FUZZ_CHECK(SameFields(chunk, sliced));

  nino::v1::StateChunk proto;
  if (!proto.ParseFromString(msg)) return;  // e.g. invalid UTF-8 in a string field
  FUZZ_CHECK(SameFields(chunk, proto));

  // Re-encode the chunk's fields: byte for byte protobuf's encoding, and parses back.
  if (chunk.data_size() == 0 || chunk.chunk_index() < 0) return;
  const std::string payload = chunk.DataAsString();
  const nino::wire::ChunkSpan span{chunk.chunk_index(), 0, chunk.data_size()};
  const nino::wire::StateChunkFrame frame = nino::wire::StateChunkFrame::Encode(
      chunk.job_id(), chunk.job_token(), chunk.step(), payload, span, nullptr);
  const std::string encoded = frame.ToString();
  nino::v1::StateChunk expected;
  expected.set_job_id(chunk.job_id());
  expected.set_job_token(chunk.job_token());
  expected.set_step(chunk.step());
  expected.set_chunk_index(chunk.chunk_index());
  expected.set_total_bytes(chunk.data_size());
  expected.set_data(payload);
  expected.set_crc32c(
      nino::wire::MakeStateChunk(chunk.job_id(), chunk.job_token(), chunk.step(), payload, span)
          .crc32c());
  FUZZ_CHECK(encoded == expected.SerializeAsString());
  ReceivedStateChunk back;
  FUZZ_CHECK(back.ParseBytes(encoded).ok());
  FUZZ_CHECK(back.job_id() == chunk.job_id() && back.step() == chunk.step() &&
             back.DataAsString() == payload && back.total_bytes() == chunk.data_size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const bool check_finite = (data[0] & 1) != 0;
  const bool predictions = (data[0] & 2) != 0;
  const int64_t max_chunk_bytes = static_cast<int64_t>(data[0] >> 2) * 16;
  const int64_t dest_bytes =
      (static_cast<int64_t>(data[1]) | (static_cast<int64_t>(data[2]) << 8)) + 1;
  std::vector<char> dest(static_cast<size_t>(dest_bytes), '\x5a');
  ChunkAssembler assembler(dest.data(), dest_bytes, max_chunk_bytes, check_finite);

  size_t pos = 3;
  for (int n = 0; n < 64 && pos + 2 <= size; ++n) {
    const size_t len = std::min<size_t>(data[pos] | (data[pos + 1] << 8), size - pos - 2);
    const std::string msg(reinterpret_cast<const char*>(data + pos + 2), len);
    pos += 2 + len;

    const std::vector<char> before = dest;
    absl::Status added;
    if (predictions) {
      nino::v1::PredictionChunk chunk;
      if (!chunk.ParseFromString(msg)) continue;
      added = assembler.Add(chunk);
    } else {
      ReceivedStateChunk chunk;
      if (!chunk.ParseBytes(msg).ok()) {
        FUZZ_CHECK(chunk.data_size() == 0 && chunk.job_id().empty());  // cleared on error
        ReceivedStateChunk sliced;
        FUZZ_CHECK(!sliced.Parse(ThreeSlices(msg)).ok());
        continue;
      }
      CheckStateChunk(msg, chunk);
      added = assembler.Add(chunk.fields());
    }
    const bool non_finite = absl::StrContains(added.message(), "NaN or Inf");
    if (!added.ok() && !non_finite) FUZZ_CHECK(dest == before);
  }
  const absl::Status finished = assembler.Finish();
  FUZZ_CHECK(finished.ok() == assembler.complete());
  if (finished.ok()) FUZZ_CHECK(assembler.received_bytes() == dest_bytes);
  FUZZ_CHECK(assembler.received_bytes() >= 0 && assembler.received_bytes() <= dest_bytes);
  return 0;
}
