"""Builds the nino package; the nino.v1 gRPC stubs are generated from
proto/nino/v1/nowcaster.proto at build time (never committed).

The .proto is looked up in $NINO_PROTO_DIR, else ../proto next to this file. The generator is
protoc with grpc_python_plugin (Debian: protobuf-compiler, protobuf-compiler-grpc), else
grpc_tools.protoc (pip: grpcio-tools).
"""

import os
import shutil
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = "nino/v1/nowcaster.proto"


def generate_stubs(out_dir):
    proto_dir = os.environ.get("NINO_PROTO_DIR") or os.path.join(HERE, "..", "proto")
    if not os.path.isfile(os.path.join(proto_dir, PROTO)):
        raise RuntimeError("nino: %s not found under %s (set NINO_PROTO_DIR to the repository's "
                           "proto/ folder)" % (PROTO, proto_dir))
    os.makedirs(out_dir, exist_ok=True)
    protoc, plugin = shutil.which("protoc"), shutil.which("grpc_python_plugin")
    if protoc and plugin:
        cmd = [protoc, "--proto_path=" + proto_dir, "--python_out=" + out_dir,
               "--grpc_python_out=" + out_dir, "--plugin=protoc-gen-grpc_python=" + plugin, PROTO]
    else:
        cmd = [sys.executable, "-m", "grpc_tools.protoc", "--proto_path=" + proto_dir,
               "--python_out=" + out_dir, "--grpc_python_out=" + out_dir, PROTO]
    try:
        subprocess.check_call(cmd)
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeError("nino: generating the gRPC stubs failed (%s); install protoc and "
                           "grpc_python_plugin (Debian: protobuf-compiler "
                           "protobuf-compiler-grpc) or grpcio-tools" % e) from e


class BuildPyWithStubs(build_py):
    def run(self):
        super().run()
        generate_stubs(self.build_lib)


setup(cmdclass={"build_py": BuildPyWithStubs})
