#include "nowcaster/grpc_probe.h"

#include <google/protobuf/unknown_field_set.h>
#include <grpcpp/generic/generic_stub.h>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "nowcaster/grpc_status.h"

namespace nino::nowcaster {
namespace {

using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

// Length-delimited field `number` holding `value` (lengths < 128 only: service names).
std::string EncodeStringField(int number, const std::string& value) {
  std::string out;
  out.push_back(static_cast<char>((number << 3) | 2));
  out.push_back(static_cast<char>(value.size()));
  out += value;
  return out;
}

grpc::ByteBuffer ToByteBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

absl::StatusOr<std::string> FromByteBuffer(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return absl::InternalError("cannot read the response buffer");
  std::string out;
  for (const grpc::Slice& s : slices) {
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return out;
}

std::chrono::system_clock::time_point Deadline(absl::Duration timeout) {
  return std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout);
}

// Waits for the completion-queue event `tag`; false if the operation failed.
bool Await(grpc::CompletionQueue* cq, void* tag) {
  void* got = nullptr;
  bool ok = false;
  while (cq->Next(&got, &ok)) {
    if (got == tag) return ok;
  }
  return false;
}

void ShutdownAndDrain(grpc::CompletionQueue* cq) {
  cq->Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq->Next(&tag, &ok)) {
  }
}

}  // namespace

absl::StatusOr<ServingStatus> CheckHealth(const std::shared_ptr<grpc::Channel>& channel,
                                          const std::string& service, absl::Duration timeout) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(Deadline(timeout));
  grpc::CompletionQueue cq;
  // HealthCheckRequest { string service = 1; }
  auto call = stub.PrepareUnaryCall(&context, "/grpc.health.v1.Health/Check",
                                    ToByteBuffer(EncodeStringField(1, service)), &cq);
  call->StartCall();
  grpc::ByteBuffer response;
  grpc::Status status;
  int tag = 0;
  call->Finish(&response, &status, &tag);
  Await(&cq, &tag);
  ShutdownAndDrain(&cq);
  if (!status.ok()) return FromGrpcStatus(status, "Health/Check");
  NINO_ASSIGN_OR_RETURN(const std::string bytes, FromByteBuffer(response));
  // HealthCheckResponse { ServingStatus status = 1; } (absent = UNKNOWN)
  UnknownFieldSet fields;
  if (!fields.ParseFromString(bytes)) return absl::DataLossError("bad HealthCheckResponse");
  for (int i = 0; i < fields.field_count(); ++i) {
    const UnknownField& f = fields.field(i);
    if (f.number() == 1 && f.type() == UnknownField::TYPE_VARINT) {
      return static_cast<ServingStatus>(f.varint());
    }
  }
  return ServingStatus::kUnknown;
}

absl::StatusOr<std::vector<std::string>> ListServices(const std::shared_ptr<grpc::Channel>& channel,
                                                      absl::Duration timeout) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(Deadline(timeout));
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(
      &context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  int start = 0, write = 0, done = 0, read = 0, finish = 0;
  call->StartCall(&start);
  bool ok = Await(&cq, &start);
  // ServerReflectionRequest { string list_services = 7; }
  if (ok) {
    call->Write(ToByteBuffer(EncodeStringField(7, "*")), &write);
    ok = Await(&cq, &write);
  }
  if (ok) {
    call->WritesDone(&done);
    ok = Await(&cq, &done);
  }
  grpc::ByteBuffer response;
  bool got_response = false;
  if (ok) {
    call->Read(&response, &read);
    got_response = Await(&cq, &read);
  }
  grpc::Status status;
  call->Finish(&status, &finish);
  Await(&cq, &finish);
  ShutdownAndDrain(&cq);
  if (!status.ok()) return FromGrpcStatus(status, "ServerReflectionInfo");
  if (!got_response) return absl::UnavailableError("ServerReflectionInfo: no response");
  NINO_ASSIGN_OR_RETURN(const std::string bytes, FromByteBuffer(response));
  // ServerReflectionResponse { ListServiceResponse list_services_response = 6; }
  // ListServiceResponse { repeated ServiceResponse service = 1; } ServiceResponse { name = 1; }
  UnknownFieldSet top;
  if (!top.ParseFromString(bytes)) return absl::DataLossError("bad ServerReflectionResponse");
  std::vector<std::string> names;
  for (int i = 0; i < top.field_count(); ++i) {
    if (top.field(i).number() != 6 || top.field(i).type() != UnknownField::TYPE_LENGTH_DELIMITED) {
      continue;
    }
    UnknownFieldSet list;
    if (!list.ParseFromString(top.field(i).length_delimited())) {
      return absl::DataLossError("bad ListServiceResponse");
    }
    for (int j = 0; j < list.field_count(); ++j) {
      if (list.field(j).number() != 1) continue;
      UnknownFieldSet service;
      if (!service.ParseFromString(list.field(j).length_delimited())) {
        return absl::DataLossError("bad ServiceResponse");
      }
      for (int n = 0; n < service.field_count(); ++n) {
        if (service.field(n).number() == 1) names.push_back(service.field(n).length_delimited());
      }
    }
  }
  return names;
}

}  // namespace nino::nowcaster
