// nino.v1.GraphSpec / nino.v1.ModelDescription <-> the NiNo library's GraphSpec and
// ModelDescription (common/nino/neural_graph.h, model_description.h). The one place the two
// sides convert: the nowcaster reads RegisterJobRequest.graph with GraphSpecFromProto, the C++
// client (RemoteNowcaster) writes it with GraphSpecToProto.
//
// The conversion checks what the message alone decides: the graph kind, that a described graph
// has a description and no other kind carries one, each op's name, and the description itself
// as the JSON reader does (ValidateModelDescription: version, group names, inputs, the fields
// each op reads). Whether it fits the job's parameters (names, shapes, connectivity) is the
// graph builder's check (graph_from_description.h), against the parameter table.
#ifndef NINO_PROTO_GRAPH_SPEC_PROTO_H_
#define NINO_PROTO_GRAPH_SPEC_PROTO_H_

#include "absl/status/statusor.h"
#include "common/nino/model_description.h"
#include "common/nino/neural_graph.h"
#include "nino/v1/nowcaster.pb.h"

namespace nino::wire {

// INVALID_ARGUMENT for a version outside kMinModelDescriptionVersion..kModelDescriptionVersion
// ("version: 5, this reader reads versions 1 to 4"), an op name outside input, dense, norm, alias,
// flatten, add, concat, embedding, attention, multiply ("op 3 (output 'c1'): unknown op 'conv'
// (known: ...)"), or what ValidateModelDescription refuses (naming the op as DescriptionOpLabel
// does), e.g. a field the op does not read or a version-2 op in a version-1 description. The
// fields of versions 2 (transposed, heads, query, key, value and their biases), 3 (groups; 0 on
// the wire = 1) and 4 (kv_heads; 0 = heads) convert both ways.
absl::StatusOr<ModelDescription> ModelDescriptionFromProto(const v1::ModelDescription& proto);
// Overwrites *proto with `description` (every field, ops in order).
void ModelDescriptionToProto(const ModelDescription& description, v1::ModelDescription* proto);

// kind "" means "generic"; "described" needs `description` (with at least one op) and any
// other kind must leave it unset (the kinds: ParseGraphKind). INVALID_ARGUMENT naming the kind,
// or the description and the op ("description: op 2 (output 'x'): unknown op ...").
absl::StatusOr<GraphSpec> GraphSpecFromProto(const v1::GraphSpec& proto);
// Overwrites *proto with `spec`: the kind's name, the head counts, and for kDescribed the
// description (none if spec.description is null: the receiver then refuses the kind).
void GraphSpecToProto(const GraphSpec& spec, v1::GraphSpec* proto);

}  // namespace nino::wire

#endif  // NINO_PROTO_GRAPH_SPEC_PROTO_H_
