// Reading and writing PyTorch's torch.save zip format (the format of the official NiNo
// checkpoints) without Python.
//
// Reading: the zip container, the archive root folder taken from the zip entries (not from
// the file name), data.pkl decoded with our own unpickler (pickle protocol <= 5 subset that
// torch.save uses), tensor storages read from <root>/data/<key>. Supported tensor dtypes:
// float32/64, float16, bfloat16, int8/16/32/64, uint8, bool. Supported globals:
// collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter,
// torch.<X>Storage, torch.Size. Anything else is an error that names the global.
//
// Every failure (missing file, not a zip, truncated or corrupt archive, unknown opcode,
// storage too small for a tensor view, ...) is returned as a Status whose message names the
// file and the problem; nothing throws across this API.
#ifndef NINO_COMMON_IO_TORCH_FILE_H_
#define NINO_COMMON_IO_TORCH_FILE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/env/env.h"
#include "common/io/pickle_value.h"

namespace nino::io {

// Loads a whole torch.save file. Tensors are returned on CPU, contiguous, owning their memory.
absl::StatusOr<PickleValue> LoadTorchFile(const std::string& path);

// Decodes an in-memory torch.save archive; `name` is used in error messages only.
absl::StatusOr<PickleValue> LoadTorchBytes(const std::string& bytes, const std::string& name);

// Writes `value` in torch.save format (zip, data.pkl protocol 2, one storage per tensor,
// archive root "archive"), readable by Python's torch.load (1.13 and later) and by
// LoadTorchFile. Atomic and durable through WriteFileAtomically (common/env/
// write_file_atomically.h): a temporary file in the same directory, fsynced, renamed over `path`,
// then the directory is fsynced. On an error before the rename `path` is left untouched.
absl::Status SaveTorchFile(const std::string& path, const PickleValue& value);  // Env::Default()
absl::Status SaveTorchFile(Env* env, const std::string& path, const PickleValue& value);

// An ordered name -> tensor map (a state_dict).
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Builds an OrderedDict PickleValue from named tensors (the shape of model.state_dict()).
PickleValue StateDictValue(const NamedTensors& tensors);

// Extracts a state dict from a PickleValue dict whose keys are strings and values tensors.
// INVALID_ARGUMENT (naming the offending key and kind) otherwise.
absl::StatusOr<NamedTensors> ToNamedTensors(const PickleValue& dict);

}  // namespace nino::io

#endif  // NINO_COMMON_IO_TORCH_FILE_H_
