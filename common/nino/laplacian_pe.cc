#include "common/nino/laplacian_pe.h"

#include <Spectra/MatOp/SparseSymMatProd.h>
#include <Spectra/SymEigsSolver.h>

#include <Eigen/Dense>
#include <Eigen/Sparse>
#include <algorithm>
#include <cmath>
#include <random>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace nino {
namespace {

using SpMat = Eigen::SparseMatrix<double>;

// Binary symmetric adjacency without self-loops, then M = D^-1/2 A D^-1/2 (so L = I - M).
SpMat NormalisedAdjacency(const NeuralGraph& g) {
  const int64_t n = g.num_nodes;
  std::vector<Eigen::Triplet<double>> trip;
  trip.reserve(2 * g.src.size());
  for (int64_t e = 0; e < g.num_edges(); ++e) {
    if (g.src[e] == g.dst[e]) continue;
    trip.emplace_back(g.src[e], g.dst[e], 1.0);
    trip.emplace_back(g.dst[e], g.src[e], 1.0);
  }
  SpMat a(n, n);
  // Duplicates are merged to 1 (binary adjacency).
  a.setFromTriplets(trip.begin(), trip.end(), [](double, double) { return 1.0; });
  a.makeCompressed();
  Eigen::VectorXd dinv = Eigen::VectorXd::Zero(n);
  for (int64_t v = 0; v < n; ++v) {
    const double deg = a.outerIndexPtr()[v + 1] - a.outerIndexPtr()[v];
    dinv[v] = deg > 0 ? 1.0 / std::sqrt(deg) : 0.0;
  }
  for (int k = 0; k < a.outerSize(); ++k)
    for (SpMat::InnerIterator it(a, k); it; ++it) it.valueRef() = dinv[it.row()] * dinv[it.col()];
  return a;
}

}  // namespace

void LaplacianResiduals(const NeuralGraph& graph, const torch::Tensor& pos,
                        std::vector<double>* rayleigh, std::vector<double>* residual) {
  SpMat m = NormalisedAdjacency(graph);
  torch::Tensor p = pos.to(torch::kFloat64).contiguous();
  const int64_t n = p.size(0), k = p.size(1);
  rayleigh->assign(k, 0.0);
  residual->assign(k, 0.0);
  for (int64_t c = 0; c < k; ++c) {
    Eigen::VectorXd v(n);
    for (int64_t i = 0; i < n; ++i) v[i] = p[i][c].item<double>();
    const double norm = v.norm();
    if (norm > 0) v /= norm;
    Eigen::VectorXd lv = v - m * v;
    const double lambda = v.dot(lv);
    (*rayleigh)[c] = lambda;
    (*residual)[c] = (lv - lambda * v).norm();
  }
}

absl::StatusOr<LpeResult> ComputeLaplacianPE(const NeuralGraph& graph, const LpeOptions& opts) {
  const int64_t n = graph.num_nodes;
  const int64_t k = opts.dim;
  if (n - 1 < k) {
    // The layout the caller gave is too small: bad input (INVALID_ARGUMENT), decided here so
    // that no caller (the nowcaster's RegisterJob) has to remap it.
    return absl::InvalidArgumentError(absl::StrCat(
        "the graph has ", n, " nodes; the positional encoding needs at least ", k + 1));
  }
  SpMat m = NormalisedAdjacency(graph);
  Eigen::MatrixXd vecs(n, k);
  std::vector<double> vals(k);
  LpeResult out;
  if (n <= opts.dense_max_nodes) {
    out.dense = true;
    Eigen::MatrixXd lap = Eigen::MatrixXd::Identity(n, n) - Eigen::MatrixXd(m);
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(lap);
    if (es.info() != Eigen::Success) return absl::InternalError("dense eigensolver failed");
    for (int64_t c = 0; c < k; ++c) {  // ascending; drop the trivial first one
      vals[c] = es.eigenvalues()[c + 1];
      vecs.col(c) = es.eigenvectors().col(c + 1);
    }
  } else {
    out.dense = false;
    // The smallest eigenvalues of L = I - M are the largest of M (spectrum in [-1, 1]);
    // Lanczos converges on the extreme end we ask for.
    Spectra::SparseSymMatProd<double> op(m);
    const int nev = static_cast<int>(k + 1);
    const int ncv = static_cast<int>(std::min<int64_t>(n, std::max<int64_t>(4 * nev, 64)));
    Spectra::SymEigsSolver<Spectra::SparseSymMatProd<double>> solver(op, nev, ncv);
    solver.init();
    solver.compute(Spectra::SortRule::LargestAlge, 5000, 1e-10, Spectra::SortRule::LargestAlge);
    if (solver.info() != Spectra::CompInfo::Successful) {
      return absl::InternalError(
          absl::StrCat("sparse eigensolver (Spectra Lanczos) did not "
                       "converge for a graph of ",
                       n, " nodes"));
    }
    Eigen::VectorXd ev = solver.eigenvalues();  // descending in M = ascending in L
    Eigen::MatrixXd evec = solver.eigenvectors();
    for (int64_t c = 0; c < k; ++c) {
      vals[c] = 1.0 - ev[c + 1];
      vecs.col(c) = evec.col(c + 1);
    }
  }
  std::mt19937_64 rng(opts.sign_seed);
  out.pos = torch::empty({n, k}, torch::kFloat32);
  auto acc = out.pos.accessor<float, 2>();
  out.residuals.resize(k);
  for (int64_t c = 0; c < k; ++c) {
    Eigen::VectorXd v = vecs.col(c).normalized();
    Eigen::VectorXd lv = v - m * v;
    out.residuals[c] = (lv - vals[c] * v).norm();
    if (!(out.residuals[c] <= opts.max_residual)) {
      return absl::InternalError(absl::StrCat("positional encoding column ", c,
                                              " is not an eigenvector: residual ", out.residuals[c],
                                              " (eigenvalue ", vals[c], ")"));
    }
    const double sign = (rng() & 1) ? 1.0 : -1.0;
    for (int64_t i = 0; i < n; ++i) acc[i][c] = static_cast<float>(sign * v[i]);
  }
  out.eigenvalues = vals;
  return out;
}

}  // namespace nino
