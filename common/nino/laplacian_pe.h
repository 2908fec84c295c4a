// Laplacian positional encoding of a neural graph's nodes (shared/spec/NINO_SPEC.md 3.6):
// the eigenvectors of the 2nd..(k+1)-th smallest eigenvalues of the symmetric normalised
// Laplacian of the symmetrised graph, each with a random sign.
#ifndef NINO_COMMON_NINO_LAPLACIAN_PE_H_
#define NINO_COMMON_NINO_LAPLACIAN_PE_H_

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/nino/neural_graph.h"

namespace nino {

struct LpeOptions {
  int64_t dim = 8;                  // columns kept
  int64_t dense_max_nodes = 300;    // dense self-adjoint solver up to this many nodes
  uint64_t sign_seed = 0;           // seeds the random +-1 column signs (injected, reproducible)
  double max_residual = 1e-4;       // every column must satisfy ||L v - lambda v|| <= this
};

struct LpeResult {
  torch::Tensor pos;                // [N, dim] float32
  std::vector<double> eigenvalues;  // [dim], ascending (the trivial one dropped)
  std::vector<double> residuals;    // [dim], ||L v - lambda v||_2 of each unit column
  bool dense = true;                // which solver ran
};

// FAILED_PRECONDITION if N - 1 < dim (tiny graphs unsupported, as officially);
// INTERNAL if the sparse solver does not converge or a column fails the eigenvector check.
absl::StatusOr<LpeResult> ComputeLaplacianPE(const NeuralGraph& graph, const LpeOptions& opts = {});

// ||L v - (v^T L v) v|| for each column of `pos` (any [N, k] float tensor), and the Rayleigh
// quotients; used by tests to check a supplied encoding against the graph.
void LaplacianResiduals(const NeuralGraph& graph, const torch::Tensor& pos,
                        std::vector<double>* rayleigh, std::vector<double>* residual);

}  // namespace nino

#endif  // NINO_COMMON_NINO_LAPLACIAN_PE_H_
