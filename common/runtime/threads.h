// The intra-op thread count a binary's --threads flag selects.
#ifndef NINO_COMMON_RUNTIME_THREADS_H_
#define NINO_COMMON_RUNTIME_THREADS_H_

namespace nino::runtime {

// `requested` if > 0, else every core (at least 1). LibTorch (Debian's 1.13) defaults to one
// thread here, so every binary sets its count explicitly.
int ThreadsOrAllCores(int requested);

}  // namespace nino::runtime

#endif  // NINO_COMMON_RUNTIME_THREADS_H_
