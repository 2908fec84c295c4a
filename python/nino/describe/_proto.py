"""description_to_proto: the JSON form as a nino.v1.ModelDescription."""


def description_to_proto(description, message=None):
    """Fills `message` (a nino.v1.ModelDescription; a new one when None) from the JSON form and
    returns it."""
    if message is None:
        from .. import _client
        pb2, _ = _client.load_stubs()
        message = pb2.ModelDescription()
    message.Clear()
    message.version = description["version"]
    for op in description["ops"]:
        m = message.ops.add(op=op["op"], output=op["output"])
        m.inputs.extend(op.get("inputs", []))
        m.weight = op.get("weight", "")
        m.bias = op.get("bias", "")
        m.units = op.get("units", 0)
        m.positions = op.get("positions", 0)
        m.kind = op.get("kind", "")
    return message
