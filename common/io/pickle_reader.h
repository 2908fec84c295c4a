// A hand-written, bounds-checked unpickler for the subset of the pickle format that
// torch.save (pickle protocol 2; opcodes up to protocol 5 are understood where listed)
// writes for state dicts and simple containers. Internal to common/io; use torch_file.h.
// Hand-written because LibTorch 1.13's torch::pickle_load cannot read torch.save state dicts:
// it maps collections.OrderedDict to None and rejects SETITEM / APPEND (1-entry dicts and
// lists), bytes, torch.Size and ints in [2^31, 2^55) (shared/notes/BUILD_OFFLINE.md section 6).
//
// Supported opcodes: PROTO FRAME STOP GLOBAL STACK_GLOBAL MEMOIZE PUT GET BINPUT LONG_BINPUT
// BINGET LONG_BINGET MARK POP POP_MARK EMPTY_DICT EMPTY_LIST EMPTY_TUPLE DICT LIST TUPLE
// TUPLE1 TUPLE2 TUPLE3 BININT BININT1 BININT2 LONG1 LONG4 (<= 64-bit values) BINFLOAT
// BINUNICODE SHORT_BINUNICODE BINUNICODE8 BINBYTES SHORT_BINBYTES BINBYTES8 NEWTRUE NEWFALSE
// NONE SETITEM SETITEMS APPEND APPENDS REDUCE BUILD (state ignored for dicts and tensors)
// NEWOBJ BINPERSID. Every other opcode is UNIMPLEMENTED; a byte that is no pickle opcode at
// all is DATA_LOSS.
//
// Supported globals (anything else is INVALID_ARGUMENT, rejected where the GLOBAL appears):
//   collections.OrderedDict                     -> ordered dict
//   torch._utils._rebuild_tensor_v2             -> tensor (contiguous copy of the view)
//   torch._utils._rebuild_parameter             -> the tensor
//   torch.{Float,Double,Half,BFloat16,Long,Int,Short,Char,Byte,Bool}Storage (persistent ids)
//   torch.Size                                  -> tuple
//   _codecs.encode(str, 'latin1'), __builtin__.bytes() / builtins.bytes()
//                                               -> bytes (how protocol 2 pickles bytes)
//
// Errors carry the byte offset of the failing opcode. Error codes: DATA_LOSS for malformed or
// truncated pickles and storages that do not fit a tensor view, UNIMPLEMENTED for valid pickle
// opcodes outside the subset, INVALID_ARGUMENT for unsupported globals / values (e.g. an int
// beyond 64 bits).
#ifndef NINO_COMMON_IO_PICKLE_READER_H_
#define NINO_COMMON_IO_PICKLE_READER_H_

#include <torch/torch.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/io/pickle_value.h"

namespace nino::io {

// Returns the whole storage `key` as a 1-D CPU tensor of exactly `numel` elements of `dtype`
// (it may share memory with the archive buffer; the reader copies out of it). Called once
// per distinct key.
using StorageLoader = std::function<absl::StatusOr<torch::Tensor>(
    const std::string& key, torch::ScalarType dtype, int64_t numel)>;

struct PickleReaderOptions {
  size_t max_stack_size = size_t{1} << 20;  // items on the unpickler stack
  size_t max_marks = size_t{1} << 16;       // open MARKs
  size_t max_memo_size = size_t{1} << 20;   // memo entries
  int max_depth = 200;                      // container nesting of the result (cycles fail)
  size_t max_dims = 64;                     // tensor rank
};

// Decodes one pickle. `loader` may be empty when the pickle holds no persistent ids.
// Tensors in the result are CPU, contiguous and own their memory.
absl::StatusOr<PickleValue> ReadPickle(std::string_view data, const StorageLoader& loader,
                                       const PickleReaderOptions& options = {});

// Maps "FloatStorage" etc. to a dtype; false if unknown.
bool StorageTypeToDtype(const std::string& storage_name, torch::ScalarType* dtype);
// Maps a dtype to "FloatStorage" etc.; nullptr if torch.save has no such legacy storage name.
const char* DtypeToStorageType(torch::ScalarType dtype);

// True if `s` is valid UTF-8 (surrogate code points allowed, as Python's 'surrogatepass').
bool IsValidUtf8(std::string_view s);

}  // namespace nino::io

#endif  // NINO_COMMON_IO_PICKLE_READER_H_
