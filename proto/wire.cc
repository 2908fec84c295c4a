#include "proto/wire.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/io/crc32c.h"

namespace nino::wire {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the wire format is little-endian float32; add byte swapping for this target");

absl::StatusOr<std::vector<ChunkSpan>> PlanChunks(int64_t total_bytes, int64_t max_chunk_bytes) {
  if (total_bytes < 1) {
    return absl::InvalidArgumentError(absl::StrCat("total_bytes must be >= 1, got ", total_bytes));
  }
  if (max_chunk_bytes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_chunk_bytes must be >= 1, got ", max_chunk_bytes));
  }
  std::vector<ChunkSpan> spans;
  spans.reserve(static_cast<size_t>((total_bytes + max_chunk_bytes - 1) / max_chunk_bytes));
  for (int64_t offset = 0; offset < total_bytes; offset += max_chunk_bytes) {
    spans.push_back({static_cast<int64_t>(spans.size()), offset,
                     std::min(max_chunk_bytes, total_bytes - offset)});
  }
  return spans;
}

absl::string_view AsBytes(absl::Span<const float> values) {
  return absl::string_view(reinterpret_cast<const char*>(values.data()),
                           values.size() * sizeof(float));
}

namespace {

template <typename Chunk>
void FillChunk(absl::string_view payload, const ChunkSpan& span, Chunk* chunk) {
  const absl::string_view data = payload.substr(span.offset_bytes, span.size_bytes);
  chunk->set_chunk_index(span.index);
  chunk->set_offset_bytes(span.offset_bytes);
  chunk->set_total_bytes(static_cast<int64_t>(payload.size()));
  chunk->set_data(data.data(), data.size());
  chunk->set_crc32c(io::Crc32c(data));
}

}  // namespace

v1::StateChunk MakeStateChunk(absl::string_view job_id, absl::string_view job_token, int64_t step,
                              absl::string_view payload, const ChunkSpan& span) {
  v1::StateChunk chunk;
  chunk.set_job_id(std::string(job_id));
  chunk.set_job_token(std::string(job_token));
  chunk.set_step(step);
  FillChunk(payload, span, &chunk);
  return chunk;
}

v1::PredictionChunk MakePredictionChunk(absl::string_view job_id, int64_t step, int32_t k,
                                        absl::string_view payload, const ChunkSpan& span) {
  v1::PredictionChunk chunk;
  chunk.set_job_id(std::string(job_id));
  chunk.set_step(step);
  chunk.set_k(k);
  FillChunk(payload, span, &chunk);
  return chunk;
}

absl::StatusOr<std::vector<v1::StateChunk>> SplitState(absl::string_view job_id,
                                                       absl::string_view job_token, int64_t step,
                                                       absl::Span<const float> values,
                                                       int64_t max_chunk_bytes) {
  const absl::string_view payload = AsBytes(values);
  absl::StatusOr<std::vector<ChunkSpan>> spans =
      PlanChunks(static_cast<int64_t>(payload.size()), max_chunk_bytes);
  if (!spans.ok()) return spans.status();
  std::vector<v1::StateChunk> chunks;
  chunks.reserve(spans->size());
  for (const ChunkSpan& span : *spans) {
    chunks.push_back(MakeStateChunk(job_id, job_token, step, payload, span));
  }
  return chunks;
}

ChunkAssembler::ChunkAssembler(void* dest, int64_t dest_bytes, int64_t max_chunk_bytes,
                               bool check_finite)
    : dest_(static_cast<char*>(dest)),
      dest_bytes_(dest_bytes),
      max_chunk_bytes_(max_chunk_bytes > 0 ? max_chunk_bytes : dest_bytes),
      check_finite_(check_finite) {
  if (dest_bytes_ < 1 || dest_ == nullptr) {
    status_ = absl::InvalidArgumentError(
        absl::StrCat("chunk assembler needs a buffer of >= 1 bytes, got ", dest_bytes_));
  }
}

namespace {

// The fields StateChunk and PredictionChunk share; `data` must outlive the result.
template <typename Chunk>
ChunkAssembler::Fields CommonFields(const Chunk& chunk, const absl::string_view* data) {
  ChunkAssembler::Fields f;
  f.job_id = chunk.job_id();
  f.step = chunk.step();
  f.chunk_index = chunk.chunk_index();
  f.offset_bytes = chunk.offset_bytes();
  f.total_bytes = chunk.total_bytes();
  f.data = absl::MakeConstSpan(data, 1);
  f.data_size = static_cast<int64_t>(data->size());
  f.crc32c = chunk.crc32c();
  return f;
}

}  // namespace

absl::Status ChunkAssembler::Add(const v1::StateChunk& chunk) {
  const absl::string_view data = chunk.data();
  return Add(CommonFields(chunk, &data));
}

absl::Status ChunkAssembler::Add(const v1::PredictionChunk& chunk) {
  const absl::string_view data = chunk.data();
  Fields f = CommonFields(chunk, &data);
  f.k = chunk.k();
  return Add(f);
}

absl::Status ChunkAssembler::Check(const Fields& f) const {
  const int64_t i = next_index_;
  if (f.chunk_index != i) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk ", i, ": chunk_index ", f.chunk_index, ", expected ", i));
  }
  if (i > 0) {
    if (f.job_id != job_id_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "chunk ", i, ": job_id '", f.job_id, "' differs from the stream's '", job_id_, "'"));
    }
    if (f.step != step_) {
      return absl::InvalidArgumentError(
          absl::StrCat("chunk ", i, ": step ", f.step, " differs from the stream's step ", step_));
    }
    if (f.k != k_) {
      return absl::InvalidArgumentError(
          absl::StrCat("chunk ", i, ": k ", f.k, " differs from the stream's k ", k_));
    }
  }
  if (f.total_bytes != dest_bytes_) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk ", i, ": total_bytes ", f.total_bytes, ", expected ", dest_bytes_));
  }
  if (received_bytes_ == dest_bytes_) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk ", i, ": arrived after all ", dest_bytes_, " bytes were received"));
  }
  if (f.offset_bytes != received_bytes_) {
    return absl::InvalidArgumentError(absl::StrCat("chunk ", i, ": offset_bytes ", f.offset_bytes,
                                                   ", expected ", received_bytes_));
  }
  const int64_t size = f.data_size;
  if (size < 1) return absl::InvalidArgumentError(absl::StrCat("chunk ", i, ": empty data"));
  if (size > dest_bytes_ - received_bytes_) {
    return absl::InvalidArgumentError(absl::StrCat("chunk ", i, ": data [", f.offset_bytes, ", ",
                                                   f.offset_bytes + size,
                                                   ") runs past total_bytes ", dest_bytes_));
  }
  if (size > max_chunk_bytes_) {
    return absl::InvalidArgumentError(absl::StrCat("chunk ", i, ": data holds ", size,
                                                   " bytes, more than max_chunk_bytes ",
                                                   max_chunk_bytes_));
  }
  uint32_t crc = 0;
  for (absl::string_view piece : f.data) crc = io::Crc32cExtend(crc, piece.data(), piece.size());
  if (crc != f.crc32c) {
    return absl::DataLossError(absl::StrCat("chunk ", i, ": crc32c mismatch (chunk says 0x",
                                            absl::Hex(f.crc32c, absl::kZeroPad8), ", data has 0x",
                                            absl::Hex(crc, absl::kZeroPad8), ")"));
  }
  return absl::OkStatus();
}

int64_t ChunkAssembler::FirstNonFinite(int64_t from, int64_t to) const {
  const int64_t first = from / 4, last = to / 4;  // values [first, last) are complete
  const char* base = dest_;
  uint32_t any = 0;
  // An all-ones exponent is Inf or NaN. OR-reduce first (vectorises), search only on a hit.
  for (int64_t i = first; i < last; ++i) {
    uint32_t bits;
    std::memcpy(&bits, base + 4 * i, 4);
    any |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  if (any == 0) return -1;
  for (int64_t i = first; i < last; ++i) {
    uint32_t bits;
    std::memcpy(&bits, base + 4 * i, 4);
    if ((bits & 0x7f800000u) == 0x7f800000u) return i;
  }
  return -1;
}

absl::Status ChunkAssembler::Add(const Fields& f) {
  if (!status_.ok()) return status_;
  status_ = Check(f);
  if (!status_.ok()) return status_;
  if (next_index_ == 0) {
    job_id_ = std::string(f.job_id);
    step_ = f.step;
    k_ = f.k;
  }
  char* out = dest_ + received_bytes_;
  for (absl::string_view piece : f.data) {
    std::memcpy(out, piece.data(), piece.size());
    out += piece.size();
  }
  received_bytes_ += f.data_size;
  if (check_finite_) {
    const int64_t bad = FirstNonFinite(checked_bytes_, received_bytes_);
    if (bad >= 0) {
      status_ = absl::InvalidArgumentError(
          absl::StrCat("chunk ", next_index_, ": data holds a NaN or Inf (value ", bad, ")"));
      return status_;
    }
    checked_bytes_ = received_bytes_ / 4 * 4;
  }
  ++next_index_;
  return absl::OkStatus();
}

absl::Status ChunkAssembler::Finish() const {
  if (!status_.ok()) return status_;
  if (received_bytes_ != dest_bytes_) {
    return absl::DataLossError(absl::StrCat("stream ended after ", received_bytes_, " of ",
                                            dest_bytes_, " bytes (", next_index_, " chunks)"));
  }
  return absl::OkStatus();
}

}  // namespace nino::wire
