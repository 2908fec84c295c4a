// Zero-copy StateChunk messages for PutState, the protocol's bulk path.
//
// gRPC's protobuf codec copies a chunk's `data` three times on its way through (the sender
// copies the vector into the message, serialises the message into gRPC's buffers, the receiver
// parses it into a fresh std::string). These two codecs keep the wire format of nino.v1's
// StateChunk byte for byte and drop the copies:
//
//  * StateChunkFrame (sender): the header fields are encoded into a small slice, and `data` is a
//    slice that points into the caller's snapshot, kept alive by a reference the slice holds
//    until gRPC is done with it. The kernel's socket copy is the only one.
//  * ReceivedStateChunk (receiver): the message is parsed from the slices gRPC received; `data`
//    stays in them, as pieces the ChunkAssembler checksums and copies once, into the snapshot.
//
// Any protobuf client (Python, a generated C++ stub) still talks to a server that reads
// ReceivedStateChunk: the parser accepts the full protobuf wire format of StateChunk (fields
// in any order, repeated fields last-wins, unknown fields skipped).
#ifndef NINO_PROTO_CHUNK_CODEC_H_
#define NINO_PROTO_CHUNK_CODEC_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/impl/serialization_traits.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "nino/v1/nowcaster.pb.h"
#include "proto/wire.h"

namespace nino::wire {

// The full gRPC method name of PutState (package nino.v1, service Nowcaster).
inline constexpr char kPutStateMethod[] = "/nino.v1.Nowcaster/PutState";

// One outgoing StateChunk, encoded.
class StateChunkFrame {
 public:
  // Chunk `span` of `payload` for (job_id, job_token, step), with total_bytes = payload.size()
  // and the CRC-32C of the chunk's bytes. `payload` must stay unchanged while `keepalive` is
  // held; the frame's data slice holds a copy of `keepalive` until gRPC releases the slice.
  // `span` must lie inside payload (from PlanChunks).
  static StateChunkFrame Encode(absl::string_view job_id, absl::string_view job_token, int64_t step,
                                absl::string_view payload, const ChunkSpan& span,
                                std::shared_ptr<const void> keepalive);

  const grpc::ByteBuffer& buffer() const { return buffer_; }
  // The encoded message as one string (a copy; tests).
  std::string ToString() const;

 private:
  grpc::ByteBuffer buffer_;
};

// One incoming StateChunk: the header fields, and `data` as pieces of the received buffer.
class ReceivedStateChunk {
 public:
  // Parses a serialised StateChunk from `buffer`, keeping references to its slices (no copy of
  // the data). INVALID_ARGUMENT names what is malformed; the chunk is then empty.
  absl::Status Parse(const grpc::ByteBuffer& buffer);
  // Same from contiguous bytes (tests; the pieces then refer to `bytes`, which must outlive
  // the chunk's use).
  absl::Status ParseBytes(absl::string_view bytes);

  // What the gRPC codec's Parse reported: a malformed message does not end the stream
  // silently, the handler sees this status and answers it.
  const absl::Status& parse_status() const { return parse_status_; }
  void set_parse_status(absl::Status s) { parse_status_ = std::move(s); }

  const std::string& job_id() const { return job_id_; }
  const std::string& job_token() const { return job_token_; }
  int64_t step() const { return step_; }
  int64_t chunk_index() const { return chunk_index_; }
  int64_t offset_bytes() const { return offset_bytes_; }
  int64_t total_bytes() const { return total_bytes_; }
  uint32_t crc32c() const { return crc32c_; }
  int64_t data_size() const { return data_size_; }
  // The data field's bytes, in order, concatenated = data.
  const std::vector<absl::string_view>& data_pieces() const { return data_pieces_; }
  // The data as one string (a copy; tests and error messages).
  std::string DataAsString() const;
  // The chunk as the assembler takes it (views into this chunk).
  ChunkAssembler::Fields fields() const;

 private:
  absl::Status ParsePieces(const std::vector<absl::string_view>& pieces);
  void Clear();

  absl::Status parse_status_;
  std::vector<grpc::Slice> slices_;  // keep the received bytes alive
  std::string job_id_, job_token_;
  int64_t step_ = 0, chunk_index_ = 0, offset_bytes_ = 0, total_bytes_ = 0;
  uint32_t crc32c_ = 0;
  int64_t data_size_ = 0;
  std::vector<absl::string_view> data_pieces_;
};

// Client side of PutState with StateChunkFrame: streams `payload` (a whole snapshot) in chunks
// of at most max_chunk_bytes to `channel` and waits for the server's reply. The caller sets
// deadline and metadata on `context`. `keepalive` owns payload's memory (see Encode).
grpc::Status PutStateZeroCopy(grpc::ChannelInterface* channel, grpc::ClientContext* context,
                              absl::string_view job_id, absl::string_view job_token, int64_t step,
                              absl::string_view payload, int64_t max_chunk_bytes,
                              std::shared_ptr<const void> keepalive,
                              v1::PutStateResponse* response);

// PutState with `messages` as they are (serialised StateChunks or anything else, e.g. to test
// the server's answer to a malformed message), through gRPC's public callback API.
grpc::Status PutStateMessages(grpc::ChannelInterface* channel, grpc::ClientContext* context,
                              const std::vector<grpc::ByteBuffer>& messages,
                              v1::PutStateResponse* response);

}  // namespace nino::wire

namespace grpc {

template <>
class SerializationTraits<nino::wire::StateChunkFrame, void> {
 public:
  static Status Serialize(const nino::wire::StateChunkFrame& frame, ByteBuffer* bb,
                          bool* own_buffer);
  static Status Deserialize(ByteBuffer* bb, nino::wire::StateChunkFrame* frame);
};

template <>
class SerializationTraits<nino::wire::ReceivedStateChunk, void> {
 public:
  static Status Serialize(const nino::wire::ReceivedStateChunk& chunk, ByteBuffer* bb,
                          bool* own_buffer);
  // Always OK: a malformed message is reported through chunk->parse_status().
  static Status Deserialize(ByteBuffer* bb, nino::wire::ReceivedStateChunk* chunk);
};

}  // namespace grpc

#endif  // NINO_PROTO_CHUNK_CODEC_H_
