#!/usr/bin/env bash
# Prints the Debian packages that provide the shared libraries the given binaries load
# (ldd -> path and real path, /usr-merged variants -> one `dpkg -S` call), one per line,
# sorted: the runtime stage of the images installs exactly these. Libraries no package owns
# (e.g. a CUDA LibTorch under /opt) are named on stderr; the image copies those itself.
#   bash deploy/docker/runtime_packages.sh bazel-bin/nowcaster/nino_nowcaster bazel-bin/trainer/nino_train
set -euo pipefail
mapfile -t libs < <(for b in "$@"; do ldd "$b"; done | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p' | sort -u)
cands=()
for lib in "${libs[@]}"; do
  real=$(readlink -f "$lib")
  for p in "$lib" "$real"; do
    cands+=("$p")
    case $p in /usr/*) cands+=("${p#/usr}") ;; *) cands+=("/usr$p") ;; esac
  done
done
owners=$(dpkg -S "${cands[@]}" 2>/dev/null || true)   # "pkg[:arch][, pkg2]: /path"
for lib in "${libs[@]}"; do
  real=$(readlink -f "$lib")
  hit=""
  for p in "$lib" "$real" "/usr$real" "${real#/usr}" "/usr$lib" "${lib#/usr}"; do
    hit=$(awk -v p="$p" -F': ' '$2 == p {print $1; exit}' <<<"$owners")
    [[ -n $hit ]] && break
  done
  if [[ -n $hit ]]; then tr ',' '\n' <<<"$hit" | sed 's/^ *//; s/:.*//'; else echo "runtime_packages: no package owns $lib ($real)" >&2; fi
done | sort -u
