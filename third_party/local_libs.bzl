"""Offline repository rules: LibTorch, system C++ libraries (pkg-config), and ../shared."""

_DEBIAN_INC = "/usr/include"
_DEBIAN_LIB = "/usr/lib/x86_64-linux-gnu"

def _find_abi(rctx, candidates):
    for c in candidates:
        p = rctx.path(c)
        if p.exists:
            txt = rctx.read(p)
            i = txt.find("_GLIBCXX_USE_CXX11_ABI=")
            if i >= 0:
                return txt[i + len("_GLIBCXX_USE_CXX11_ABI=")]
    return "1"

def _libtorch_impl(rctx):
    root = rctx.os.environ.get("LIBTORCH", "").rstrip("/")
    if root:
        # pip wheel layout: $LIBTORCH = .../site-packages/torch (include/ lib/ share/).
        inc = root + "/include"
        lib = root + "/lib"
        for e in rctx.path(inc).readdir():
            rctx.symlink(e, "include/" + e.basename)
        cfg = [root + "/share/cmake/Torch/TorchConfig.cmake"]
    else:
        # Debian libtorch-dev: link only the torch header trees, not all of /usr/include.
        inc = _DEBIAN_INC
        lib = _DEBIAN_LIB
        for d in ["ATen", "c10", "caffe2", "torch"]:
            rctx.symlink(inc + "/" + d, "include/" + d)
        cfg = [lib + "/cmake/Torch/TorchConfig.cmake"]
    abi = _find_abi(rctx, cfg)
    if abi != "1":
        fail("LibTorch at %s uses _GLIBCXX_USE_CXX11_ABI=%s; system gRPC/protobuf need 1" % (lib, abi))

    libs = ["torch", "torch_cpu", "c10"]
    cuda = rctx.path(lib + "/libtorch_cuda.so").exists
    if cuda:
        libs += ["torch_cuda", "c10_cuda"]
    linkopts = ["-L" + lib]
    if lib != _DEBIAN_LIB:
        linkopts.append("-Wl,-rpath," + lib)

    # --no-as-needed: libtorch_cuda registers CUDA kernels via static initialisers.
    linkopts += ["-Wl,--no-as-needed"] + ["-l" + l for l in libs] + ["-Wl,--as-needed", "-pthread"]
    defines = ["_GLIBCXX_USE_CXX11_ABI=1"]
    if cuda:
        defines.append("NINO_WITH_CUDA=1")

    rctx.file("BUILD.bazel", """
package(default_visibility = ["//visibility:public"])
cc_library(
    name = "torch",
    hdrs = glob(["include/**/*.h", "include/**/*.hpp", "include/**/*.cuh"], allow_empty = True),
    includes = ["include", "include/torch/csrc/api/include"],
    defines = {defines},
    linkopts = {linkopts},
)
""".format(linkopts = repr(linkopts), defines = repr(defines)))
    rctx.file("info.txt", "LIBTORCH=%s\nlib=%s\ncuda=%s\nabi=%s\n" % (root, lib, cuda, abi))

libtorch_repository = repository_rule(
    implementation = _libtorch_impl,
    environ = ["LIBTORCH"],
    local = True,
)

def _pkg_libs(rctx, mods):
    r = rctx.execute(["pkg-config", "--libs"] + mods)
    if r.return_code != 0:
        fail("pkg-config --libs %s failed (run tools/setup.sh): %s" % (mods, r.stderr))
    return [x for x in r.stdout.strip().split(" ") if x]

_ABSL_MODULES = [
    "absl_status",
    "absl_statusor",
    "absl_strings",
    "absl_str_format",
    "absl_str_format_internal",
    "absl_flags",
    "absl_flags_parse",
    "absl_flags_usage",
    "absl_synchronization",
    "absl_time",
]

def _system_libs_impl(rctx):
    grpc = _pkg_libs(rctx, ["grpc++", "protobuf"])
    proto = _pkg_libs(rctx, ["protobuf"])
    absl = _pkg_libs(rctx, _ABSL_MODULES)
    crypto = _pkg_libs(rctx, ["libcrypto"])
    curl = _pkg_libs(rctx, ["libcurl"])
    prometheus = _pkg_libs(rctx, ["prometheus-cpp-pull", "prometheus-cpp-core"])

    # Eigen lives in /usr/include/eigen3, which is not a builtin include dir.
    rctx.symlink("/usr/include/eigen3/Eigen", "include/Eigen")
    rctx.symlink("/usr/include/eigen3/unsupported", "include/unsupported")
    rctx.file("BUILD.bazel", """
package(default_visibility = ["//visibility:public"])
# Headers of these live in /usr/include, a builtin include dir of the auto-configured
# toolchain, so only link options are declared.
cc_library(name = "protobuf", linkopts = {proto})
cc_library(name = "grpc", linkopts = {grpc})
cc_library(name = "absl", linkopts = {absl})
cc_library(name = "crypto", linkopts = {crypto})
cc_library(name = "curl", linkopts = {curl})
# grpc++_reflection ships no pkg-config file in Debian; it needs grpc++ after it.
cc_library(name = "grpc_reflection", linkopts = ["-lgrpc++_reflection"] + {grpc})
# prometheus-cpp (core + pull: the civetweb Exposer), from prometheus-cpp-dev.
cc_library(name = "prometheus", linkopts = {prometheus})
cc_library(name = "gtest", linkopts = ["-lgtest", "-lgmock", "-pthread"])
cc_library(name = "gtest_main", linkopts = ["-lgtest_main", "-lgtest", "-lgmock", "-pthread"])
# Eigen (symlinked) + Spectra (/usr/include/Spectra) + nlohmann json (/usr/include/nlohmann).
cc_library(
    name = "eigen",
    hdrs = glob(["include/Eigen/**", "include/unsupported/**"]),
    includes = ["include"],
)
""".format(grpc = repr(grpc), proto = repr(proto), absl = repr(absl), crypto = repr(crypto), curl = repr(curl), prometheus = repr(prometheus)))

system_libs_repository = repository_rule(
    implementation = _system_libs_impl,
    environ = ["PKG_CONFIG_PATH"],
    local = True,
)

def _shared_data_impl(rctx):
    ws = rctx.path(Label("@//:WORKSPACE")).dirname
    shared = rctx.os.environ.get("NINO_SHARED_DIR", "")
    if not shared:
        shared = str(ws.dirname) + "/shared"
    present = rctx.path(shared).exists
    rctx.file("BUILD.bazel", """
package(default_visibility = ["//visibility:public"])
# Default location of the read-only shared folder (golden data, official checkpoints).
# Present at analysis time: {present}. At run time NINO_SHARED_DIR overrides it.
cc_library(name = "paths", defines = ['NINO_SHARED_DIR_DEFAULT=\\\\"{shared}\\\\"'])
""".format(shared = shared, present = present))

shared_data_repository = repository_rule(
    implementation = _shared_data_impl,
    environ = ["NINO_SHARED_DIR"],
    local = True,
)
