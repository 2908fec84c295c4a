"""nino.describe_model (torch.fx tracing into a model description, docs/GRAPH_DESCRIPTION.md):
the descriptions of an MLP, the FM-16 CNN, LeNet-5, a small ResNet and a model with torch.cat;
the refusals (attention, embeddings, grouped convolutions, other reshapes, parameters used twice
or not at all, control flow), the model left unchanged, check_description, the protocol message
and NowcastOptimizer's example_input / model_description arguments against a fake server. No
nino_nowcaster (describe_e2e_test runs against the real one)."""

import copy
import json
import unittest

import torch
import torch.nn as nn
import torch.nn.functional as F

import nino
from nino import describe
from nino_test_util import FakeNowcaster, make_opt
from described_models import (BasicBlock, LeNet5, Mlp, SmallResNet, chain_form, fm16,
                              graph_size)


def ops_of(model, x):
    return nino.describe_model(model, x)["ops"]


class MlpAndChainTest(unittest.TestCase):
    def test_mlp_equals_the_chain_description(self):
        model = Mlp()  # flattens the image itself: the flatten folds into the input group
        d = nino.describe_model(model, torch.randn(4, 1, 28, 28))
        self.assertEqual(d["version"], 1)
        self.assertEqual(chain_form(d), [
            ("input", 784),
            ("dense", "fc.1.weight", "fc.1.bias"),
            ("dense", "fc.3.weight", "fc.3.bias"),
            ("dense", "fc.5.weight", "fc.5.bias"),
        ])
        # Only aliases (the ReLUs) besides the chain; no flatten op.
        self.assertEqual([op["op"] for op in d["ops"]],
                         ["input", "dense", "alias", "dense", "alias", "dense"])
        self.assertEqual(d["ops"][2]["kind"], "relu")
        # The same model fed flat vectors: the same description.
        flat = nino.describe_model(model, torch.randn(4, 784))
        self.assertEqual(chain_form(flat), chain_form(d))

    def test_fm16_pool_and_flatten_of_one_position_are_aliases(self):
        d = nino.describe_model(fm16(), torch.randn(2, 1, 28, 28))
        self.assertEqual(chain_form(d), [
            ("input", 1),
            ("dense", "fc.0.weight", "fc.0.bias"),
            ("dense", "fc.2.weight", "fc.2.bias"),
            ("dense", "fc.4.weight", "fc.4.bias"),
            ("dense", "fc.8.weight", "fc.8.bias"),
        ])
        kinds = [op.get("kind") for op in d["ops"] if op["op"] == "alias"]
        self.assertEqual(kinds, ["relu", "relu", "relu", "adaptive_avg_pool2d", "flatten"])
        self.assertNotIn("flatten", [op["op"] for op in d["ops"]])

    def test_json_round_trip(self):
        d = nino.describe_model(fm16(), torch.randn(2, 1, 28, 28))
        self.assertEqual(json.loads(json.dumps(d)), d)


class LeNetTest(unittest.TestCase):
    def test_lenet5(self):
        model = LeNet5()
        d = nino.describe_model(model, torch.randn(3, 1, 28, 28))
        ops = d["ops"]
        self.assertEqual([(op["op"], op.get("weight", op.get("kind", op.get("positions"))))
                          for op in ops], [
            ("input", None),
            ("dense", "conv1.weight"), ("alias", "relu"), ("alias", "max_pool2d"),
            ("dense", "conv2.weight"), ("alias", "relu"), ("alias", "max_pool2d"),
            ("flatten", 16),
            ("dense", "fc1.weight"), ("alias", "relu"),
            ("dense", "fc2.weight"), ("alias", "relu"),
            ("dense", "fc3.weight"),
        ])
        self.assertEqual(ops[0]["units"], 1)
        flat = ops[7]
        self.assertEqual(flat["inputs"], [ops[6]["output"]])
        self.assertEqual(ops[8]["inputs"], [flat["output"]])
        # Every op's inputs name earlier outputs; outputs are unique.
        outputs = [op["output"] for op in ops]
        self.assertEqual(len(set(outputs)), len(outputs))
        for i, op in enumerate(ops):
            for x in op.get("inputs", []):
                self.assertIn(x, outputs[:i])
        # 16 channels x 16 positions feed fc1's 256 inputs.
        nodes, edges = graph_size(d, model)
        self.assertEqual(nodes, 1 + (6 + 1) + (16 + 1) + 256 + (120 + 1) + (84 + 1) + (10 + 1))
        self.assertEqual(edges, 6 * 1 + 6 + 16 * 6 + 16 + 16 * 16 + 120 * 256 + 120 + 84 * 120 +
                         84 + 10 * 84 + 10 + nodes)

    def test_flatten_forms_are_equal(self):
        class Variant(LeNet5):
            def __init__(self, how):
                super().__init__()
                self.how = how
                self.flat = nn.Flatten()

            def forward(self, x):
                x = F.max_pool2d(F.relu(self.conv2(F.max_pool2d(F.relu(self.conv1(x)), 2))), 2)
                if self.how == "torch.flatten":
                    x = torch.flatten(x, 1)
                elif self.how == "nn.Flatten":
                    x = self.flat(x)
                elif self.how == "reshape":
                    x = x.reshape(x.shape[0], -1)
                else:
                    x = x.flatten(1)
                return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))

        base = nino.describe_model(LeNet5(), torch.randn(2, 1, 28, 28))
        for how in ("torch.flatten", "nn.Flatten", "reshape", "method"):
            with self.subTest(how=how):
                d = nino.describe_model(Variant(how), torch.randn(2, 1, 28, 28))
                self.assertEqual(chain_form(d), chain_form(base))
                self.assertEqual([op["positions"] for op in d["ops"] if op["op"] == "flatten"],
                                 [16])


class ResNetTest(unittest.TestCase):
    def test_small_resnet(self):
        model = SmallResNet()
        d = nino.describe_model(model, torch.randn(2, 1, 28, 28))
        ops = d["ops"]
        by_out = {op["output"]: op for op in ops}
        adds = [op for op in ops if op["op"] == "add"]
        self.assertEqual(len(adds), 2)

        def origin(group):
            """The op that created the group's neurons (through aliases and norms)."""
            op = by_out[group]
            while op["op"] in ("alias", "norm"):
                op = by_out[op["inputs"][0]]
            return op.get("weight", op["op"])

        # Block 1: identity shortcut (the stem's output after its BN and ReLU).
        self.assertEqual(sorted(origin(x) for x in adds[0]["inputs"]),
                         ["layer1.conv2.weight", "stem.0.weight"])
        # Block 2: projection shortcut (1x1 conv, stride 2, no bias).
        self.assertEqual(sorted(origin(x) for x in adds[1]["inputs"]),
                         ["layer2.conv2.weight", "layer2.shortcut.0.weight"])
        norms = [(op["weight"], op["bias"]) for op in ops if op["op"] == "norm"]
        self.assertEqual(norms, [
            ("stem.1.weight", "stem.1.bias"),
            ("layer1.bn1.weight", "layer1.bn1.bias"), ("layer1.bn2.weight", "layer1.bn2.bias"),
            ("layer2.bn1.weight", "layer2.bn1.bias"), ("layer2.bn2.weight", "layer2.bn2.bias"),
            ("layer2.shortcut.1.weight", "layer2.shortcut.1.bias"),
        ])
        dense = [op for op in ops if op["op"] == "dense"]
        self.assertTrue(all("bias" not in op for op in dense[:-1]))  # bias=False convs
        self.assertEqual(dense[-1]["weight"], "fc.weight")
        self.assertNotIn("flatten", [op["op"] for op in ops])  # global pool: 1 position
        # Every parameter exactly once, in some op.
        names = [op[r] for op in ops for r in ("weight", "bias") if op.get(r)]
        self.assertEqual(sorted(names), sorted(n for n, _ in model.named_parameters()))
        nodes, edges = graph_size(d, model)
        # Input; stem conv + BN; two convs + BNs in block 1; three in block 2 (with the
        # projection); fc with its bias. No bias on the convs: 2 auxiliary nodes each (BN).
        self.assertEqual(nodes, 1 + (8 + 2) + 2 * (8 + 2) + 3 * (16 + 2) + (10 + 1))
        self.assertEqual(edges - nodes, 8 * 1 + 2 * 8 + 2 * (8 * 8 + 2 * 8) + 8 +
                         (16 * 8 + 16 * 16 + 16 * 8 + 3 * 2 * 16) + 16 + 10 * 16 + 10)

    def test_mean_as_global_pool_and_inplace_add(self):
        class Block(BasicBlock):
            def forward(self, x):
                out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
                out += self.shortcut(x)
                return out.relu_()

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.stem = nn.Conv2d(1, 8, 3, padding=1)
                self.block = Block(8, 8, 1)
                self.fc = nn.Linear(8, 3)

            def forward(self, x):
                return self.fc(self.block(self.stem(x)).mean((2, 3)))

        ops = ops_of(Net(), torch.randn(2, 1, 8, 8))
        self.assertEqual([op["op"] for op in ops if op["op"] not in ("alias", "norm")],
                         ["input", "dense", "dense", "dense", "add", "dense"])
        self.assertIn("mean", [op.get("kind") for op in ops])


class ConcatTest(unittest.TestCase):
    def test_cat_along_channels(self):
        class Inception(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Conv2d(3, 4, 1)
                self.b = nn.Conv2d(3, 6, 3, padding=1)
                self.bn = nn.BatchNorm2d(10)
                self.head = nn.Linear(10 * 4, 2)

            def forward(self, x):
                y = torch.cat([self.a(x), F.relu(self.b(x))], dim=1)
                y = F.avg_pool2d(self.bn(y), 4)
                return self.head(torch.flatten(y, 1))

        model = Inception()
        d = nino.describe_model(model, torch.randn(2, 3, 8, 8))
        ops = d["ops"]
        cat = [op for op in ops if op["op"] == "concat"]
        self.assertEqual(len(cat), 1)
        self.assertEqual(len(cat[0]["inputs"]), 2)
        flat = [op for op in ops if op["op"] == "flatten"]
        self.assertEqual(flat[0]["positions"], 4)
        self.assertEqual(ops[0]["units"], 3)  # the input is read by two convs: no folding
        nodes, _ = graph_size(d, model)
        self.assertEqual(nodes, 3 + (1 + 4) + (1 + 6) + 2 + 40 + (1 + 2))

    def test_two_inputs(self):
        class TwoTowers(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(5, 4)
                self.b = nn.Linear(3, 2)
                self.head = nn.Linear(6, 1)

            def forward(self, image, meta):
                return self.head(torch.cat([self.a(image.flatten(1)), self.b(meta)], 1))

        ops = ops_of(TwoTowers(), (torch.randn(2, 1, 5, 1), torch.randn(2, 3)))
        self.assertEqual([(op["op"], op.get("units")) for op in ops],
                         [("input", 5), ("input", 3), ("dense", None), ("dense", None),
                          ("concat", None), ("dense", None)])

    def test_cat_along_another_axis_is_refused(self):
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(4, 4)
                self.b = nn.Linear(4, 4)

            def forward(self, x):
                return torch.cat([self.a(x), self.b(x)], dim=0)

        with self.assertRaisesRegex(ValueError, r"fx node 'cat'.*torch\.cat along dim 0, but the "
                                    r"units are on axis 1"):
            nino.describe_model(Net(), torch.randn(2, 4))


class RefusalTest(unittest.TestCase):
    def assert_refused(self, model, x, *patterns):
        with self.assertRaises(ValueError) as cm:
            nino.describe_model(model, x)
        msg = str(cm.exception)
        for p in patterns:
            self.assertRegex(msg, p)
        self.assertIn("Supported in model description version 1", msg)
        return msg

    def test_attention(self):
        class Attn(nn.Module):
            def __init__(self):
                super().__init__()
                self.proj = nn.Linear(8, 8)
                self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

            def forward(self, x):
                h = self.proj(x)
                return self.attn(h, h, h)[0]

        msg = self.assert_refused(Attn(), torch.randn(2, 5, 8), r"fx node 'attn'",
                                  r"call_module MultiheadAttention", r"module 'attn'",
                                  r"attention is not in description version 1")
        self.assertIn("describe_test.py", msg)  # the user's source line

    def test_embedding(self):
        class Emb(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = nn.Embedding(10, 4)
                self.fc = nn.Linear(4, 2)

            def forward(self, x):
                return self.fc(self.emb(x))

        self.assert_refused(Emb(), torch.tensor([[1, 2], [3, 4]]), r"fx node 'emb'",
                            r"call_module Embedding", r"embeddings are not in description")

    def test_grouped_conv(self):
        class Depthwise(nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.ReLU())

            def forward(self, x):
                return self.inner(x)

        self.assert_refused(Depthwise(), torch.randn(1, 4, 6, 6), r"fx node 'inner_0'",
                            r"module 'inner\.0'", r"grouped or depthwise convolution \(groups=4\)")

    def test_functional_reshape_of_another_kind(self):
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 4, 3)
                self.fc = nn.Linear(36, 2)

            def forward(self, x):
                y = self.conv(x)
                y = torch.reshape(y, (-1, 36))  # (B * C, H * W): not a flatten
                return self.fc(y)

        self.assert_refused(Net(), torch.randn(2, 1, 8, 8), r"fx node 'reshape'",
                            r"reshape from \[2, 4, 6, 6\] to \[8, 36\] is not a flatten from dim "
                            r"1")

    def test_flatten_from_dim_2_and_permute(self):
        class Net(nn.Module):
            def __init__(self, how):
                super().__init__()
                self.how = how
                self.conv = nn.Conv2d(1, 4, 7, stride=7)
                self.fc = nn.Linear(4, 2)

            def forward(self, x):
                y = self.conv(x)
                if self.how == "flatten2":
                    y = y.flatten(2).transpose(1, 2)  # ViT patches: (B, C, P) -> (B, P, C)
                else:
                    y = y.permute(0, 2, 3, 1)
                return self.fc(y)

        self.assert_refused(Net("flatten2"), torch.randn(2, 1, 28, 28), r"fx node 'flatten'",
                            r"not a flatten from dim 1")
        self.assert_refused(Net("permute"), torch.randn(2, 1, 28, 28), r"fx node 'permute'",
                            r"'permute' has no description op")

    def test_broadcasting_and_parameter_additions(self):
        class Pos(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4)
                self.pos = nn.Parameter(torch.zeros(4))

            def forward(self, x):
                return self.fc(x) + self.pos

        self.assert_refused(Pos(), torch.randn(2, 4), r"fx node 'add'",
                            r"parameter 'pos' is added to a tensor")

        class Bias(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4)

            def forward(self, x):
                return self.fc(x) + 1.0

        self.assert_refused(Bias(), torch.randn(2, 4), r"not tensor \+ tensor")

    def test_parameters_used_twice_or_not_at_all(self):
        class Twice(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4)

            def forward(self, x):
                return self.fc(F.relu(self.fc(x)))

        self.assert_refused(Twice(), torch.randn(2, 4), r"fx node 'fc_1'",
                            r"parameter 'fc.weight' is used twice \(by fx nodes 'fc' and 'fc_1'\)")

        class Unused(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4)
                self.spare = nn.Linear(4, 4)

            def forward(self, x):
                return self.fc(x)

        self.assert_refused(Unused(), torch.randn(2, 4),
                            r"'spare\.weight', 'spare\.bias' are not used by the traced forward")

    def test_tied_parameters_appear_once(self):
        class Tied(nn.Module):
            def __init__(self):
                super().__init__()
                self.a = nn.Linear(4, 4)
                self.b = nn.Linear(4, 4)
                self.b.weight = self.a.weight  # named_parameters lists it once, as a.weight

            def forward(self, x):
                return self.a(x)

        model = Tied()
        self.assertEqual([n for n, _ in model.named_parameters()],
                         ["a.weight", "a.bias", "b.bias"])
        self.assert_refused(model, torch.randn(2, 4), r"'b\.bias' are not used|'b\.bias' is not "
                            r"used|parameter\(s\) 'b\.bias'")

        class TiedUsed(Tied):
            def forward(self, x):
                return self.b(F.relu(self.a(x)))

        self.assert_refused(TiedUsed(), torch.randn(2, 4), r"fx node 'b'",
                            r"parameter 'a\.weight' is used twice")

    def test_unsupported_modules_and_functions(self):
        class PRelu(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4)
                self.act = nn.PReLU()

            def forward(self, x):
                return self.act(self.fc(x))

        self.assert_refused(PRelu(), torch.randn(2, 4), r"fx node 'act'",
                            r"module type PReLU holds parameters")

        class MatMul(nn.Module):
            def __init__(self):
                super().__init__()
                self.w = nn.Parameter(torch.randn(4, 4))

            def forward(self, x):
                return x @ self.w

        self.assert_refused(MatMul(), torch.randn(2, 4), r"fx node 'matmul'",
                            r"parameter 'w' is used by 'matmul'")

        class LayerNormAll(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 2, 3)
                self.ln = nn.LayerNorm([2, 4, 4])

            def forward(self, x):
                return self.ln(self.conv(x))

        self.assert_refused(LayerNormAll(), torch.randn(2, 1, 6, 6), r"fx node 'ln'",
                            r"layer_norm normalises axis 3, but the units are on axis 1")

    def test_control_flow_fx_cannot_trace(self):
        class Branchy(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4)

            def forward(self, x):
                if x.sum() > 0:
                    return self.fc(x)
                return x

        with self.assertRaisesRegex(ValueError, r"torch\.fx cannot trace Branchy .*control "
                                    r"flow"):
            nino.describe_model(Branchy(), torch.randn(2, 4))

    def test_bad_arguments(self):
        with self.assertRaisesRegex(TypeError, "model must be a torch.nn.Module"):
            nino.describe_model("model", torch.randn(2))
        with self.assertRaisesRegex(TypeError, "example_input must be a tensor"):
            nino.describe_model(Mlp(), [1, 2])
        with self.assertRaisesRegex(ValueError, r"forward takes 1 inputs \(x\), example_input "
                                    r"has 2"):
            nino.describe_model(LeNet5(), (torch.randn(1, 1, 28, 28), torch.randn(1)))
        with self.assertRaisesRegex(ValueError, r"running the model on the example input failed "
                                    r"at fx node 'conv1' \(call_module Conv2d.*: RuntimeError: "
                                    r"Given groups=1"):
            nino.describe_model(LeNet5(), torch.randn(2, 3, 28, 28))


class ModelUnchangedTest(unittest.TestCase):
    def test_nothing_changes(self):
        model = SmallResNet()
        model.train()
        model.layer1.eval()  # a mixed state, restored as it was
        before = copy.deepcopy(model.state_dict())
        x = torch.randn(2, 1, 28, 28)
        x0 = x.clone()
        nino.describe_model(model, x)
        after = model.state_dict()
        for k, v in before.items():
            self.assertTrue(torch.equal(v, after[k]), k)  # BN statistics not updated
        self.assertTrue(model.training and model.layer2.training)
        self.assertFalse(model.layer1.training or model.layer1.bn1.training)
        self.assertTrue(torch.equal(x, x0))
        self.assertTrue(all(p.grad is None for p in model.parameters()))


class CheckDescriptionTest(unittest.TestCase):
    def setUp(self):
        self.model = LeNet5()
        self.params = [(n, tuple(p.shape)) for n, p in self.model.named_parameters()]
        self.d = nino.describe_model(self.model, torch.randn(1, 1, 28, 28))

    def refused(self, d, pattern):
        with self.assertRaisesRegex(ValueError, pattern):
            describe.check_description(d, self.params)

    def test_valid(self):
        describe.check_description(self.d, self.params)
        describe.check_description(self.d)

    def test_errors_name_the_op(self):
        d = copy.deepcopy(self.d)
        d["version"] = 2
        self.refused(d, "version 2 is not supported")
        d = copy.deepcopy(self.d)
        d["ops"][1]["op"] = "conv"
        self.refused(d, r"op 1 \('conv1'\): 'op' must be one of")
        d = copy.deepcopy(self.d)
        d["ops"][1]["stride"] = 2
        self.refused(d, r"op 1 \('conv1'\): unknown or misplaced field\(s\) \['stride'\]")
        d = copy.deepcopy(self.d)
        d["ops"][2]["inputs"] = ["nowhere"]
        self.refused(d, r"op 2 \('relu'\): input group 'nowhere' is not created by an earlier op")
        d = copy.deepcopy(self.d)
        d["ops"][7]["positions"] = 9
        self.refused(d, r"op 8 \('fc1'\): weight 'fc1.weight' of shape \[120, 256\] does not "
                     r"take the 144 units")
        d = copy.deepcopy(self.d)
        del d["ops"][-1]["bias"]
        self.refused(d, r"parameter\(s\) fc3.bias appear in no op")
        d = copy.deepcopy(self.d)
        d["ops"][-1]["bias"] = "fc2.bias"
        self.refused(d, r"op 12 \('fc3'\): parameter 'fc2.bias' appears twice \(also in op 10\)")
        d = copy.deepcopy(self.d)
        d["ops"][0]["units"] = 0
        self.refused(d, r"op 0 \('x'\): 'units' must be an integer >= 1")
        self.refused({"version": 1, "ops": []}, "'ops' must be a non-empty list")
        self.refused([], "expected an object")

    def test_normalize(self):
        text = json.dumps(self.d)
        self.assertEqual(describe.normalize_description(text), self.d)
        copy_ = describe.normalize_description(self.d)
        copy_["ops"].clear()
        self.assertTrue(self.d["ops"])  # the caller's object is never modified
        with self.assertRaisesRegex(ValueError, "not valid JSON"):
            describe.normalize_description("{")
        with self.assertRaisesRegex(TypeError, "must be a dict"):
            describe.normalize_description(3)


class ProtoTest(unittest.TestCase):
    def test_description_to_proto(self):
        from nino.v1 import nowcaster_pb2 as pb2
        d = nino.describe_model(LeNet5(), torch.randn(1, 1, 28, 28))
        msg = describe.description_to_proto(d)
        self.assertIsInstance(msg, pb2.ModelDescription)
        self.assertEqual(msg.version, 1)
        self.assertEqual(len(msg.ops), len(d["ops"]))
        flat = msg.ops[7]
        self.assertEqual((flat.op, flat.positions, list(flat.inputs)),
                         ("flatten", 16, d["ops"][7]["inputs"]))
        dense = msg.ops[1]
        self.assertEqual((dense.op, dense.output, dense.weight, dense.bias, dense.units),
                         ("dense", "conv1", "conv1.weight", "conv1.bias", 0))
        self.assertEqual(msg.ops[0].units, 1)
        self.assertEqual(msg.ops[2].kind, "relu")
        # Round trip through the wire format.
        back = pb2.ModelDescription.FromString(msg.SerializeToString())
        self.assertEqual(back, msg)


class OptimizerArgumentsTest(unittest.TestCase):
    """NowcastOptimizer(example_input= / model_description=) against a fake server that
    records the RegisterJob requests."""

    @classmethod
    def setUpClass(cls):
        cls.server = FakeNowcaster()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_example_input_registers_a_described_job(self):
        model = LeNet5()
        n = len(self.server.registrations)
        opt = make_opt(model, self.server.address, example_input=torch.randn(2, 1, 28, 28))
        opt.close()
        req = self.server.registrations[n]
        self.assertEqual(req.graph.kind, "described")
        self.assertEqual(req.graph.description.version, 1)
        self.assertEqual(req.graph.description, describe.description_to_proto(
            opt.model_description))
        self.assertEqual([op.op for op in req.graph.description.ops][:2], ["input", "dense"])

    def test_explicit_description_and_default(self):
        model = LeNet5()
        d = nino.describe_model(model, torch.randn(1, 1, 28, 28))
        n = len(self.server.registrations)
        opt = make_opt(model, self.server.address, model_description=json.dumps(d))
        opt.close()
        self.assertEqual(opt.model_description, d)
        self.assertEqual(self.server.registrations[n].graph.kind, "described")
        opt = make_opt(model, self.server.address)
        opt.close()
        self.assertIsNone(opt.model_description)
        self.assertEqual(self.server.registrations[n + 1].graph.kind, "auto")
        self.assertFalse(self.server.registrations[n + 1].graph.HasField("description"))

    def test_bad_descriptions_fail_at_construction(self):
        model = LeNet5()
        n = len(self.server.registrations)
        with self.assertRaisesRegex(ValueError, "example_input or model_description, not both"):
            make_opt(model, self.server.address, example_input=torch.randn(1, 1, 28, 28),
                     model_description={})
        d = nino.describe_model(model, torch.randn(1, 1, 28, 28))
        d["ops"][1]["weight"] = "conv9.weight"
        with self.assertRaisesRegex(ValueError, "'conv9.weight' is not a parameter of the model"):
            make_opt(model, self.server.address, model_description=d)

        class Attn(nn.Module):
            def __init__(self):
                super().__init__()
                self.attn = nn.MultiheadAttention(4, 1)

            def forward(self, x):
                return self.attn(x, x, x)[0]

        with self.assertRaisesRegex(ValueError, "fx node 'attn'"):
            make_opt(Attn(), self.server.address, example_input=torch.randn(3, 2, 4))
        self.assertEqual(len(self.server.registrations), n)  # nothing was registered


if __name__ == "__main__":
    unittest.main()
