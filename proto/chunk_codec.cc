#include "proto/chunk_codec.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/client_callback.h>

#include <cstring>
#include <functional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/io/crc32c.h"
#include "nowcaster/grpc_status.h"

namespace nino::wire {
namespace {

// Protobuf wire types and StateChunk's field numbers (nowcaster.proto).
enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };
enum Field : uint32_t {
  kJobId = 1,
  kJobToken = 2,
  kStep = 3,
  kChunkIndex = 4,
  kOffsetBytes = 5,
  kTotalBytes = 6,
  kData = 7,
  kCrc32c = 8,
};

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}
void PutTag(std::string* out, uint32_t field, WireType type) {
  PutVarint(out, (field << 3) | type);
}
// proto3 leaves fields at their default value out; so do we, so the bytes equal protobuf's.
void PutInt(std::string* out, uint32_t field, int64_t v) {
  if (v == 0) return;
  PutTag(out, field, kVarint);
  PutVarint(out, static_cast<uint64_t>(v));
}
void PutString(std::string* out, uint32_t field, absl::string_view s) {
  if (s.empty()) return;
  PutTag(out, field, kLengthDelimited);
  PutVarint(out, s.size());
  out->append(s.data(), s.size());
}

// Reads a message spread over several pieces of memory.
class PieceReader {
 public:
  explicit PieceReader(const std::vector<absl::string_view>& pieces) : pieces_(pieces) { Skip0(); }

  bool AtEnd() const { return piece_ == pieces_.size(); }
  int64_t position() const { return position_; }

  bool ReadByte(uint8_t* b) {
    if (AtEnd()) return false;
    *b = static_cast<uint8_t>(pieces_[piece_][offset_]);
    Advance(1);
    return true;
  }
  bool ReadVarint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b;
      if (!ReadByte(&b)) return false;
      *v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;  // more than 10 bytes
  }
  bool ReadFixed(int bytes, uint64_t* v) {
    *v = 0;
    for (int i = 0; i < bytes; ++i) {
      uint8_t b;
      if (!ReadByte(&b)) return false;
      *v |= static_cast<uint64_t>(b) << (8 * i);
    }
    return true;
  }
  // The next n bytes as pieces (views into the input), or false if fewer remain.
  bool Take(uint64_t n, std::vector<absl::string_view>* out) {
    while (n > 0) {
      if (AtEnd()) return false;
      const absl::string_view rest = pieces_[piece_].substr(offset_);
      const size_t m = static_cast<size_t>(std::min<uint64_t>(n, rest.size()));
      if (out != nullptr) out->push_back(rest.substr(0, m));
      Advance(m);
      n -= m;
    }
    return true;
  }

 private:
  void Advance(size_t n) {
    offset_ += n;
    position_ += static_cast<int64_t>(n);
    if (offset_ == pieces_[piece_].size()) {
      ++piece_;
      offset_ = 0;
      Skip0();
    }
  }
  void Skip0() {
    while (piece_ < pieces_.size() && pieces_[piece_].empty()) ++piece_;
  }

  const std::vector<absl::string_view>& pieces_;
  size_t piece_ = 0, offset_ = 0;
  int64_t position_ = 0;
};

std::string Join(const std::vector<absl::string_view>& pieces) {
  std::string s;
  for (absl::string_view p : pieces) s.append(p.data(), p.size());
  return s;
}

void ReleaseKeepalive(void* user_data) {
  delete static_cast<std::shared_ptr<const void>*>(user_data);
}

}  // namespace

// --- StateChunkFrame -----------------------------------------------------------------------

StateChunkFrame StateChunkFrame::Encode(absl::string_view job_id, absl::string_view job_token,
                                        int64_t step, absl::string_view payload,
                                        const ChunkSpan& span,
                                        std::shared_ptr<const void> keepalive) {
  const absl::string_view data =
      payload.substr(static_cast<size_t>(span.offset_bytes), static_cast<size_t>(span.size_bytes));
  std::string head;
  head.reserve(64 + job_id.size() + job_token.size());
  PutString(&head, kJobId, job_id);
  PutString(&head, kJobToken, job_token);
  PutInt(&head, kStep, step);
  PutInt(&head, kChunkIndex, span.index);
  PutInt(&head, kOffsetBytes, span.offset_bytes);
  PutInt(&head, kTotalBytes, static_cast<int64_t>(payload.size()));
  std::string tail;
  if (!data.empty()) {
    PutTag(&head, kData, kLengthDelimited);
    PutVarint(&head, data.size());
  }
  const uint32_t crc = io::Crc32c(data);
  if (crc != 0) {
    PutTag(&tail, kCrc32c, kFixed32);
    for (int i = 0; i < 4; ++i) tail.push_back(static_cast<char>((crc >> (8 * i)) & 0xff));
  }
  std::vector<grpc::Slice> slices;
  slices.emplace_back(head.data(), head.size());  // copies the small header
  if (!data.empty()) {
    // gRPC releases the slice (and with it our reference to the payload) when it is done.
    slices.emplace_back(const_cast<char*>(data.data()), data.size(), &ReleaseKeepalive,
                        new std::shared_ptr<const void>(std::move(keepalive)));
  }
  if (!tail.empty()) slices.emplace_back(tail.data(), tail.size());
  StateChunkFrame frame;
  frame.buffer_ = grpc::ByteBuffer(slices.data(), slices.size());
  return frame;
}

std::string StateChunkFrame::ToString() const {
  std::vector<grpc::Slice> slices;
  std::string s;
  if (!buffer_.Dump(&slices).ok()) return s;
  for (const grpc::Slice& slice : slices) {
    s.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return s;
}

// --- ReceivedStateChunk --------------------------------------------------------------------

void ReceivedStateChunk::Clear() {
  slices_.clear();
  job_id_.clear();
  job_token_.clear();
  step_ = chunk_index_ = offset_bytes_ = total_bytes_ = 0;
  crc32c_ = 0;
  data_size_ = 0;
  data_pieces_.clear();
}

absl::Status ReceivedStateChunk::Parse(const grpc::ByteBuffer& buffer) {
  Clear();
  std::vector<grpc::Slice> slices;
  if (grpc::Status s = buffer.Dump(&slices); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("StateChunk: unreadable message: ", s.error_message()));
  }
  std::vector<absl::string_view> pieces;
  pieces.reserve(slices.size());
  for (const grpc::Slice& slice : slices) {
    pieces.emplace_back(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  absl::Status status = ParsePieces(pieces);
  if (status.ok()) {
    slices_ = std::move(slices);  // the data pieces point into these
  } else {
    Clear();
  }
  return status;
}

absl::Status ReceivedStateChunk::ParseBytes(absl::string_view bytes) {
  Clear();
  absl::Status status = ParsePieces({bytes});
  if (!status.ok()) Clear();
  return status;
}

absl::Status ReceivedStateChunk::ParsePieces(const std::vector<absl::string_view>& pieces) {
  PieceReader in(pieces);
  auto malformed = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("StateChunk: malformed message at byte ", in.position(), ": ", what));
  };
  while (!in.AtEnd()) {
    uint64_t tag;
    if (!in.ReadVarint(&tag)) return malformed("truncated tag");
    const uint64_t field = tag >> 3;
    const uint32_t type = static_cast<uint32_t>(tag & 7);
    if (field == 0 || field > 0x1fffffff) return malformed(absl::StrCat("field number ", field));
    uint64_t v = 0;
    switch (type) {
      case kVarint:
        if (!in.ReadVarint(&v)) return malformed("truncated varint");
        if (field == kStep) step_ = static_cast<int64_t>(v);
        if (field == kChunkIndex) chunk_index_ = static_cast<int64_t>(v);
        if (field == kOffsetBytes) offset_bytes_ = static_cast<int64_t>(v);
        if (field == kTotalBytes) total_bytes_ = static_cast<int64_t>(v);
        break;
      case kFixed64:
        if (!in.ReadFixed(8, &v)) return malformed("truncated fixed64");
        break;
      case kFixed32:
        if (!in.ReadFixed(4, &v)) return malformed("truncated fixed32");
        if (field == kCrc32c) crc32c_ = static_cast<uint32_t>(v);
        break;
      case kLengthDelimited: {
        uint64_t n;
        if (!in.ReadVarint(&n)) return malformed("truncated length");
        std::vector<absl::string_view> bytes;
        if (!in.Take(n, &bytes)) {
          return malformed(absl::StrCat("field ", field, " declares ", n, " bytes, fewer remain"));
        }
        if (field == kJobId) job_id_ = Join(bytes);
        if (field == kJobToken) job_token_ = Join(bytes);
        if (field == kData) {
          data_pieces_ = std::move(bytes);
          data_size_ = static_cast<int64_t>(n);
        }
        break;
      }
      default:
        return malformed(absl::StrCat("wire type ", type, " (field ", field, ")"));
    }
  }
  return absl::OkStatus();
}

std::string ReceivedStateChunk::DataAsString() const { return Join(data_pieces_); }

ChunkAssembler::Fields ReceivedStateChunk::fields() const {
  ChunkAssembler::Fields f;
  f.job_id = job_id_;
  f.step = step_;
  f.chunk_index = chunk_index_;
  f.offset_bytes = offset_bytes_;
  f.total_bytes = total_bytes_;
  f.data = data_pieces_;
  f.data_size = data_size_;
  f.crc32c = crc32c_;
  return f;
}

// --- client --------------------------------------------------------------------------------

namespace {

// One PutState stream on gRPC's callback client API, through the generic stub (the method is
// client-streaming on the server; on the wire every gRPC stream is the same), awaited by the
// calling thread: one message in flight at a time, then the half-close and the one reply.
// `Message` is StateChunkFrame or grpc::ByteBuffer.
template <typename Message>
class UploadStream final : public grpc::ClientBidiReactor<Message, v1::PutStateResponse> {
 public:
  // `next(i)` is message i of `count`.
  UploadStream(std::function<Message(size_t)> next, size_t count, v1::PutStateResponse* response)
      : next_(std::move(next)), count_(count), response_(response) {}

  grpc::Status Run(grpc::ChannelInterface* channel, grpc::ClientContext* context) {
    // The stub only names the channel for the call, which refers to the channel itself.
    grpc::TemplatedGenericStub<Message, v1::PutStateResponse> stub(
        std::shared_ptr<grpc::ChannelInterface>(channel, [](grpc::ChannelInterface*) {}));
    stub.PrepareBidiStreamingCall(context, kPutStateMethod, grpc::StubOptions(), this);
    this->StartRead(response_);
    WriteNext();
    this->StartCall();
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
    return status_;
  }
  // false: the stream broke (the server answered early, e.g. with an error); the final status
  // says why.
  void OnWriteDone(bool ok) override {
    if (ok) WriteNext();
  }
  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    done_ = true;
  }

 private:
  void WriteNext() {
    if (sent_ == count_) {
      this->StartWritesDone();
      return;
    }
    message_ = next_(sent_++);
    this->StartWrite(&message_);
  }

  const std::function<Message(size_t)> next_;
  const size_t count_;
  v1::PutStateResponse* const response_;
  size_t sent_ = 0;
  Message message_;  // the one being written
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::Status PutStateZeroCopy(grpc::ChannelInterface* channel, grpc::ClientContext* context,
                              absl::string_view job_id, absl::string_view job_token, int64_t step,
                              absl::string_view payload, int64_t max_chunk_bytes,
                              std::shared_ptr<const void> keepalive,
                              v1::PutStateResponse* response) {
  absl::StatusOr<std::vector<ChunkSpan>> spans =
      PlanChunks(static_cast<int64_t>(payload.size()), max_chunk_bytes);
  // PlanChunks chose the code (INVALID_ARGUMENT for a bad size); it is passed on, not remapped.
  if (!spans.ok()) return nowcaster::ToGrpcStatus(spans.status());
  UploadStream<StateChunkFrame> upload(
      [&](size_t i) {
        return StateChunkFrame::Encode(job_id, job_token, step, payload, (*spans)[i], keepalive);
      },
      spans->size(), response);
  return upload.Run(channel, context);
}

grpc::Status PutStateMessages(grpc::ChannelInterface* channel, grpc::ClientContext* context,
                              const std::vector<grpc::ByteBuffer>& messages,
                              v1::PutStateResponse* response) {
  UploadStream<grpc::ByteBuffer> upload([&](size_t i) { return messages[i]; }, messages.size(),
                                        response);
  return upload.Run(channel, context);
}

}  // namespace nino::wire

namespace grpc {

Status SerializationTraits<nino::wire::StateChunkFrame, void>::Serialize(
    const nino::wire::StateChunkFrame& frame, ByteBuffer* bb, bool* own_buffer) {
  *bb = frame.buffer();  // shares the slices
  *own_buffer = true;
  return Status::OK;
}

Status SerializationTraits<nino::wire::StateChunkFrame, void>::Deserialize(
    ByteBuffer* /*bb*/, nino::wire::StateChunkFrame* /*frame*/) {
  return Status(StatusCode::INTERNAL, "StateChunkFrame is send-only");
}

Status SerializationTraits<nino::wire::ReceivedStateChunk, void>::Serialize(
    const nino::wire::ReceivedStateChunk& /*chunk*/, ByteBuffer* /*bb*/, bool* /*own_buffer*/) {
  return Status(StatusCode::INTERNAL, "ReceivedStateChunk is receive-only");
}

Status SerializationTraits<nino::wire::ReceivedStateChunk, void>::Deserialize(
    ByteBuffer* bb, nino::wire::ReceivedStateChunk* chunk) {
  if (bb == nullptr) {
    chunk->set_parse_status(absl::InvalidArgumentError("StateChunk: no payload"));
    return Status::OK;
  }
  chunk->set_parse_status(chunk->Parse(*bb));
  bb->Clear();
  return Status::OK;
}

}  // namespace grpc
