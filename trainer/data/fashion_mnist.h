// Fashion-MNIST from the gzip IDX files of the Debian package dataset-fashion-mnist
// (/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz), read with
// zlib. Every error names the file and what was wrong:
//   NOT_FOUND         the folder or a file is missing (with a hint to install the package);
//   DATA_LOSS         truncated / corrupt gzip, bad magic number, wrong dimensions, wrong size,
//                     label out of range, image / label count mismatch;
//   INVALID_ARGUMENT  a `limit` larger than the file.
#ifndef NINO_TRAINER_DATA_FASHION_MNIST_H_
#define NINO_TRAINER_DATA_FASHION_MNIST_H_

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace nino::trainer {

// torchvision's MNIST normalisation (the one the official NiNo code uses for Fashion-MNIST too):
// x = (pixel / 255 - kMnistMean) / kMnistStd, computed in float32 like ToTensor + Normalize.
inline constexpr float kMnistMean = 0.1307f;
inline constexpr float kMnistStd = 0.3081f;
inline constexpr int64_t kMnistRows = 28;
inline constexpr int64_t kMnistCols = 28;
inline constexpr int64_t kMnistClasses = 10;

struct ImageDataset {
  torch::Tensor images;  // [n, 1, 28, 28] float32, normalised as above
  torch::Tensor labels;  // [n] int64 in [0, 10)
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

// $NINO_FASHION_MNIST_DIR if set and non-empty, else /usr/share/datasets/fashion-mnist.
std::string DefaultFashionMnistDir();

// The file names of one split ("train-..." or "t10k-...").
std::string FashionMnistImagesFile(bool train);
std::string FashionMnistLabelsFile(bool train);

// Loads the training (60,000) or test (10,000) split from `dir`. limit >= 0 keeps the first
// `limit` examples (the trainer uses the first 55,000 = n - n/12 training images); -1 keeps all.
// The whole file is still read and validated. limit > n is INVALID_ARGUMENT.
absl::StatusOr<ImageDataset> LoadFashionMnist(const std::string& dir, bool train,
                                              int64_t limit = -1);

}  // namespace nino::trainer

#endif  // NINO_TRAINER_DATA_FASHION_MNIST_H_
