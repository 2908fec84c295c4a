# The generated nino.v1 gRPC stubs (nowcaster_pb2.py, nowcaster_pb2_grpc.py) live here in an
# installed package; they are never committed (protoc generates them from
# proto/nino/v1/nowcaster.proto: tools/setup.sh, python/install.sh, //python:nowcaster_py_stubs).
# extend_path lets a source checkout find them in bazel-bin/python/nino/v1 as well
# (PYTHONPATH=python:bazel-bin/python).
import pkgutil

__path__ = pkgutil.extend_path(__path__, __name__)
