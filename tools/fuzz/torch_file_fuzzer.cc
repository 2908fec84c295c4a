// libFuzzer target: the torch.save reader (common/io/torch_file.h, pickle_reader.h).
//
// An input that starts with the zip magic "PK\3\4" is a whole torch.save archive and goes
// through LoadTorchBytes, then through what the two checkpoint loaders do with the result:
// ToNamedTensors on "model" (training checkpoints) and NiNoModel::FromTorchValue (NiNo
// checkpoints: "state_dict" + "model_args", or a bare state dict).
// Any other input is a bare pickle (data.pkl) for ReadPickle, whose storages are served as
// zeros: the zip layer checks CRC-32s, so mutations of data.pkl inside an archive rarely reach
// the unpickler, and this path fuzzes it directly.
//
// Every input must come back as a Status; a crash, a sanitizer report, a leak or an
// allocation above libFuzzer's -rss_limit_mb/-malloc_limit_mb is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/io/pickle_reader.h"
#include "common/io/torch_file.h"
#include "common/nino/nino_model.h"

namespace {

using nino::io::PickleValue;

// Storages for bare pickles: zeros, at most 1 MiB of elements (a real archive's storage is
// bounded by the file too).
absl::StatusOr<torch::Tensor> ZeroStorage(const std::string& /*key*/, torch::ScalarType dtype,
                                          int64_t numel) {
  if (numel < 0 || numel > (int64_t{1} << 20)) {
    return absl::DataLossError("fuzz loader: storage too large");
  }
  return torch::zeros({numel}, torch::TensorOptions().dtype(dtype));
}

void UseStateDict(const PickleValue& top) {
  // The training checkpoint loader (trainer/train_checkpoint.cc) reads "model" this way.
  if (const PickleValue* model = top.Find("model"); model != nullptr) {
    (void)nino::io::ToNamedTensors(*model);
  }
  // The NiNo checkpoint loader: NiNoModel::Load = LoadTorchFile + FromTorchValue.
  absl::StatusOr<nino::NiNoModel> nino_model = nino::NiNoModel::FromTorchValue(top, "fuzz.pt");
  (void)nino_model;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  if (bytes.compare(0, 4, std::string("PK\x03\x04", 4)) == 0) {
    absl::StatusOr<PickleValue> top = nino::io::LoadTorchBytes(bytes, "fuzz.pt");
    if (std::getenv("NINO_FUZZ_VERBOSE") != nullptr) {
      std::fprintf(stderr, "LoadTorchBytes: %s\n", top.status().ToString().c_str());
    }
    if (top.ok()) {
      (void)top->DebugString(4);
      UseStateDict(*top);
    }
  } else {
    absl::StatusOr<PickleValue> value = nino::io::ReadPickle(std::string_view(bytes), &ZeroStorage);
    if (value.ok()) {
      (void)value->DebugString(4);
      UseStateDict(*value);
    }
  }
  return 0;
}
