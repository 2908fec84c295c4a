// Moving flat float32 vectors over the nino.v1 protocol: a vector travels as consecutive
// StateChunk / PredictionChunk messages, each carrying bytes [offset_bytes, offset_bytes +
// len(data)) of the little-endian payload, the payload's total size and the CRC-32C of its data.
//
// The splitter builds one chunk at a time (a sender never holds a second copy of the whole
// vector); the assembler validates a stream chunk by chunk and writes each chunk's bytes
// straight into a buffer the caller preallocated (e.g. a float32 tensor's storage).
#ifndef NINO_PROTO_WIRE_H_
#define NINO_PROTO_WIRE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "nino/v1/nowcaster.pb.h"

namespace nino::wire {

// HTTP/2 settings both ends of the nowcaster channel use for bulk snapshot streams (gRPC's
// defaults are 16 KiB frames and a 64 KiB initial stream window that BDP probing grows only
// gradually): a 1 MiB chunk then travels as one frame, and the sender never stalls on window
// updates within a chunk. Set as channel arguments: grpc.http2.max_frame_size and
// grpc.http2.lookahead_bytes.
inline constexpr int kHttp2MaxFrameBytes = 4 << 20;
inline constexpr int kHttp2LookaheadBytes = 16 << 20;

// Where one chunk lies in its stream.
struct ChunkSpan {
  int64_t index = 0;         // 0, 1, 2, ...
  int64_t offset_bytes = 0;  // first payload byte it carries
  int64_t size_bytes = 0;    // bytes it carries (> 0)
};

// Splits a payload of total_bytes into consecutive spans of max_chunk_bytes (the last one may
// be shorter). INVALID_ARGUMENT if total_bytes < 1 or max_chunk_bytes < 1.
absl::StatusOr<std::vector<ChunkSpan>> PlanChunks(int64_t total_bytes, int64_t max_chunk_bytes);

// The bytes of a float32 vector as they travel (little-endian; this build is little-endian).
absl::string_view AsBytes(absl::Span<const float> values);

// Chunk `span` of `payload` as a StateChunk of (job_id, job_token, step): data, crc32c,
// offsets and total_bytes = payload.size(). `span` must lie inside payload (from PlanChunks).
v1::StateChunk MakeStateChunk(absl::string_view job_id, absl::string_view job_token, int64_t step,
                              absl::string_view payload, const ChunkSpan& span);

// Same for a prediction of (job_id, step, k). nowcast_seconds is left 0 (the server sets it on
// the first chunk).
v1::PredictionChunk MakePredictionChunk(absl::string_view job_id, int64_t step, int32_t k,
                                        absl::string_view payload, const ChunkSpan& span);

// Every StateChunk of `values` at once (small vectors, tests). INVALID_ARGUMENT as PlanChunks.
absl::StatusOr<std::vector<v1::StateChunk>> SplitState(absl::string_view job_id,
                                                       absl::string_view job_token, int64_t step,
                                                       absl::Span<const float> values,
                                                       int64_t max_chunk_bytes);

// Validates one chunk stream and writes it into a caller-owned buffer.
//
// The first chunk fixes the stream's job_id, step (and k for predictions); every chunk must
// carry them unchanged, total_bytes equal to the buffer size, chunk_index 0, 1, 2, ... in
// order, offset_bytes equal to the bytes received so far, 1..max_chunk_bytes bytes of data that
// do not run past total_bytes, and the CRC-32C of its data. A violation of the protocol is
// INVALID_ARGUMENT and a checksum mismatch DATA_LOSS, both naming the chunk and the field;
// after the first error every call returns it again. Bytes of a chunk rejected by these checks
// are never written. Not thread-safe.
//
// With check_finite, the buffer holds float32 values and every value must be finite: each
// chunk's values are checked as they are copied (while in cache), and a NaN or Inf is
// INVALID_ARGUMENT naming the chunk and the value's index; that chunk's bytes have then been
// written, and the caller discards the buffer.
class ChunkAssembler {
 public:
  // dest: dest_bytes writable bytes, owned by the caller, alive while chunks are added.
  // max_chunk_bytes: the largest data field accepted (<= 0: no limit beyond dest_bytes).
  ChunkAssembler(void* dest, int64_t dest_bytes, int64_t max_chunk_bytes,
                 bool check_finite = false);

  absl::Status Add(const v1::StateChunk& chunk);
  absl::Status Add(const v1::PredictionChunk& chunk);

  // One chunk whose data is given as pieces (concatenated in order), e.g. still in the slices
  // gRPC received (proto/chunk_codec.h).
  struct Fields {
    absl::string_view job_id;
    int64_t step = 0;
    int32_t k = 0;  // predictions only; 0 for states
    int64_t chunk_index = 0;
    int64_t offset_bytes = 0;
    int64_t total_bytes = 0;
    absl::Span<const absl::string_view> data;
    int64_t data_size = 0;  // sum of the pieces' sizes
    uint32_t crc32c = 0;
  };
  absl::Status Add(const Fields& chunk);

  // OK once every byte arrived; DATA_LOSS "stream ended after N of M bytes" otherwise (or the
  // stream's earlier error).
  absl::Status Finish() const;

  bool complete() const { return status_.ok() && received_bytes_ == dest_bytes_; }
  int64_t received_bytes() const { return received_bytes_; }
  int64_t received_chunks() const { return next_index_; }
  // The identity fixed by the first chunk (empty / 0 before it).
  const std::string& job_id() const { return job_id_; }
  int64_t step() const { return step_; }
  int32_t k() const { return k_; }

 private:
  absl::Status Check(const Fields& f) const;
  // Index of the first non-finite float32 among the complete values in dest_[from, to)
  // (from a multiple of 4), or -1.
  int64_t FirstNonFinite(int64_t from, int64_t to) const;

  char* dest_;
  int64_t dest_bytes_;
  int64_t max_chunk_bytes_;
  bool check_finite_;
  absl::Status status_;
  int64_t received_bytes_ = 0;
  int64_t checked_bytes_ = 0;  // check_finite: dest_[0, checked_bytes_) holds finite values
  int64_t next_index_ = 0;
  std::string job_id_;
  int64_t step_ = 0;
  int32_t k_ = 0;
};

}  // namespace nino::wire

#endif  // NINO_PROTO_WIRE_H_
