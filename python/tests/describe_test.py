"""nino.describe_model (torch.fx tracing into a model description, docs/GRAPH_DESCRIPTION.md):
the descriptions of an MLP, the FM-16 CNN, LeNet-5, a small ResNet, a model with torch.cat
(version 1), the benchmark's ViT, a batch_first=False ViT and a token model (version 2); the
grouped and depthwise convolutions (version 3), products and grouped-query attention (version 4:
a gated MLP traced, describe_llama against the C++ DescribeLlama's fixture), models of torchvision (ResNet-18, DenseNet,
MobileNetV2, VisionTransformer, whose forward reads shapes); the
refusals (cross-attention, attention written by hand, other reshapes,
parameters used twice, not at all or in other ways, control flow), the model left unchanged,
check_description, the protocol message and NowcastOptimizer's example_input /
model_description arguments against a fake server. No nino_nowcaster (describe_e2e_test runs
against the real one)."""

import copy
import json
import unittest

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import nino
from nino import describe
from nino_test_util import FakeNowcaster, make_opt
from described_models import (BasicBlock, DepthwiseSeparable, GatedMlp, LeNet5, Mlp,
                              SeqFirstViT, SmallResNet, TinyLlama, TokenModel, ViT, chain_form,
                              fm16, graph_size, vit_graph_size)
from nino_test_util import _find

SUPPORTED = "Supported (docs/GRAPH_DESCRIPTION.md, model description versions 1 to 4)"


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


def compact(ops):
    """The ops as tuples: (op, output, inputs, the other fields in a fixed order)."""
    keys = ("units", "weight", "bias", "kind", "heads", "positions")
    return [(op["op"], op["output"], tuple(op.get("inputs", ())),
             tuple((k, op[k]) for k in keys if k in op)) for op in ops]


def block_ops(b, x, add0):
    """The ops of ViTBlock `b` (fx names blocks_<b>_*) reading group `x`; add0: the number of
    the first of its two fx 'add' nodes, getitem_<b + 1> its attention output."""
    p, n = "blocks.%d." % b, "blocks_%d_" % b
    a1, a2 = "add_%d" % add0, "add_%d" % (add0 + 1)
    return [
        ("norm", n + "ln1", (x,), (("weight", p + "ln1.weight"), ("bias", p + "ln1.bias"))),
        ("attention", n + "attn.attention", (n + "ln1",),
         (("weight", p + "attn.in_proj_weight"), ("bias", p + "attn.in_proj_bias"),
          ("heads", 4))),
        ("dense", n + "attn", (n + "attn.attention",),
         (("weight", p + "attn.out_proj.weight"), ("bias", p + "attn.out_proj.bias"))),
        ("alias", "getitem_%d" % (b + 1), (n + "attn",), (("kind", "attention_output"),)),
        ("add", a1, (x, "getitem_%d" % (b + 1)), ()),
        ("norm", n + "ln2", (a1,), (("weight", p + "ln2.weight"), ("bias", p + "ln2.bias"))),
        ("dense", n + "mlp_0", (n + "ln2",),
         (("weight", p + "mlp.0.weight"), ("bias", p + "mlp.0.bias"))),
        ("alias", n + "mlp_1", (n + "mlp_0",), (("kind", "gelu"),)),
        ("dense", n + "mlp_2", (n + "mlp_1",),
         (("weight", p + "mlp.2.weight"), ("bias", p + "mlp.2.bias"))),
        ("add", a2, (a1, n + "mlp_2"), ()),
    ]


class TransformerTest(unittest.TestCase):
    def test_vit(self):
        model = ViT()
        d = nino.describe_model(model, torch.randn(3, 1, 28, 28))
        self.assertEqual(d["version"], 2)
        self.assertEqual(compact(d["ops"]), [
            ("input", "x", (), (("units", 1),)),
            ("dense", "patch", ("x",), (("weight", "patch.weight"), ("bias", "patch.bias"))),
            ("alias", "transpose", ("patch",), (("kind", "to_tokens"),)),
            ("embedding", "cat", ("transpose",), (("weight", "cls"), ("kind", "token"))),
            ("embedding", "add", ("cat",), (("weight", "pos"), ("kind", "position"))),
        ] + block_ops(0, "add", 1) + block_ops(1, "add_2", 3) + [
            ("alias", "getitem_3", ("add_4",), (("kind", "select_token"),)),
            ("norm", "ln", ("getitem_3",), (("weight", "ln.weight"), ("bias", "ln.bias"))),
            ("dense", "head", ("ln",), (("weight", "head.weight"), ("bias", "head.bias"))),
        ])
        names = [op[r] for op in d["ops"] for r in ("weight", "bias") if op.get(r)]
        self.assertEqual(sorted(names), sorted(n for n, _ in model.named_parameters()))
        describe.check_description(d, [(n, tuple(p.shape)) for n, p in model.named_parameters()])
        self.assertEqual(json.loads(json.dumps(d)), d)
        # The contract's closed form, written out: d 64, 17 tokens, 4 heads, MLP 256.
        nodes = (1 + (64 + 1) + 1 + 17 +  # input, patch conv + bias, class token, positions
                 2 * (2 + (4 + 2 + 1 + 2 * 64) + (64 + 1) + 2 + (256 + 1) + (64 + 1)) +
                 2 + (10 + 1))            # final LayerNorm, head
        block = (2 * 64 + (3 * 64 * 64 + 2 * 64 + 3 * 64) + (64 * 64 + 64) + 64 + 2 * 64 +
                 (256 * 64 + 256) + (64 * 256 + 64) + 64)
        edges = (64 + 64 + 64 + 17 * 64 + 2 * block + 2 * 64 + 10 * 64 + 10) + nodes
        self.assertEqual(graph_size(d, model), (nodes, edges))
        self.assertEqual(vit_graph_size(), (nodes, edges))
        small = ViT(d=8, depth=1, heads=2)
        self.assertEqual(graph_size(nino.describe_model(small, torch.randn(1, 1, 28, 28)), small),
                         vit_graph_size(d=8, depth=1, heads=2))

    def test_vit_batch_first_false(self):
        model = SeqFirstViT()
        d = nino.describe_model(model, torch.randn(2, 1, 28, 28))
        self.assertEqual(d["version"], 2)
        self.assertEqual([(op["op"], op.get("kind", op.get("weight"))) for op in d["ops"]], [
            ("input", None), ("dense", "patch.weight"), ("alias", "to_tokens"),
            ("embedding", "token"), ("embedding", "position"),
            ("norm", "block.ln1.weight"), ("attention", "block.attn.in_proj_weight"),
            ("dense", "block.attn.out_proj.weight"), ("alias", "attention_output"), ("add", None),
            ("norm", "block.ln2.weight"), ("dense", "block.mlp.0.weight"), ("alias", "gelu"),
            ("dense", "block.mlp.2.weight"), ("add", None), ("alias", "select_token"),
            ("dense", "head.weight"),
        ])
        self.assertEqual(d["ops"][2]["output"], "permute")  # flatten(2).permute(2, 0, 1)
        self.assertEqual(d["ops"][6]["heads"], 2)

        class Swapped(nn.Module):  # (B, T, d) swapped to (T, B, d) by transpose(0, 1)
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(8, 8)
                self.attn = nn.MultiheadAttention(8, 2)

            def forward(self, x):
                h = self.fc(x).transpose(0, 1)
                r = self.attn(h, h, h)
                r[1]  # noqa: B018  the weights, unused
                return r[0].transpose(0, 1).mean(1)

        ops = ops_of(Swapped(), torch.randn(2, 5, 8))
        self.assertEqual([op.get("kind") for op in ops if op["op"] == "alias"],
                         ["transpose", "attention_output", "transpose", "token_mean"])

    def test_token_model(self):
        model = TokenModel()
        ids = torch.randint(1, 20, (3, 7))
        d = nino.describe_model(model, ids)
        self.assertEqual(d["version"], 2)
        self.assertEqual([(op["op"], op["output"], op.get("inputs"), op.get("kind"),
                           op.get("weight")) for op in d["ops"]], [
            ("embedding", "wte", None, "token", "wte.weight"),
            ("embedding", "add", ["wte"], "position", "wpe.weight"),
            ("norm", "block_ln1", ["add"], None, "block.ln1.weight"),
            ("attention", "block_attn.attention", ["block_ln1"], None,
             "block.attn.in_proj_weight"),
            ("dense", "block_attn", ["block_attn.attention"], None, "block.attn.out_proj.weight"),
            ("alias", "getitem_1", ["block_attn"], "attention_output", None),  # getitem: T
            ("add", "add_1", ["add", "getitem_1"], None, None),
            ("norm", "block_ln2", ["add_1"], None, "block.ln2.weight"),
            ("dense", "block_mlp_0", ["block_ln2"], None, "block.mlp.0.weight"),
            ("alias", "block_mlp_1", ["block_mlp_0"], "gelu", None),
            ("dense", "block_mlp_2", ["block_mlp_1"], None, "block.mlp.2.weight"),
            ("add", "add_2", ["add_1", "block_mlp_2"], None, None),
            ("norm", "ln", ["add_2"], None, "ln.weight"),
            ("alias", "mean", ["ln"], "token_mean", None),
            ("dense", "head", ["mean"], None, "head.weight"),  # untied: its own weight
        ])
        nodes, edges = graph_size(d, model)
        # Token rows + units, position rows; one block (d 16, 2 heads, MLP 64); head 20.
        self.assertEqual(nodes, 20 + 16 + 12 + 2 + (2 + 3 + 32) + 17 + 2 + 65 + 17 + 2 + 21)
        self.assertEqual(edges - nodes, 20 * 16 + 12 * 16 + 32 + (3 * 16 * 16 + 32 + 48) +
                         (256 + 16) + 16 + 32 + (64 * 16 + 64) + (16 * 64 + 16) + 16 + 32 +
                         (20 * 16 + 20))

    def test_embedding_forms(self):
        class Forms(nn.Module):
            """Positions as a parameter (1, T, d) and as nn.Embedding of arange added first;
            the position ids through expand; a class embedding of (B,) labels."""

            def __init__(self, how):
                super().__init__()
                self.how = how
                self.wte = nn.Embedding(10, 4)
                self.pos = nn.Parameter(torch.zeros(1, 6, 4))
                self.wpe = nn.Embedding(6, 4)
                self.fc = nn.Linear(4, 2)

            def forward(self, ids):
                if self.how == "parameter":
                    x = self.wte(ids) + self.pos
                    self.wpe.weight.shape  # noqa: B018  unused: refused as not used
                else:
                    pos = torch.arange(6).unsqueeze(0).expand(ids.shape[0], -1)
                    x = self.wpe(pos) + self.wte(ids)
                    x = x + self.pos
                return self.fc(x)

        ids = torch.randint(0, 10, (2, 6))
        ops = ops_of(Forms("embedding"), ids)
        self.assertEqual([(op["op"], op.get("inputs"), op.get("weight"), op.get("kind"))
                          for op in ops], [
            ("embedding", None, "wte.weight", "token"),
            ("embedding", ["wte"], "wpe.weight", "position"),
            ("embedding", ["add"], "pos", "position"),
            ("dense", ["add_1"], "fc.weight", None),
        ])
        with self.assertRaisesRegex(ValueError, r"'wpe\.weight' are not used"):
            nino.describe_model(Forms("parameter"), ids)

        class Label(nn.Module):
            def __init__(self):
                super().__init__()
                self.emb = nn.Embedding(10, 4)
                self.fc = nn.Linear(4, 2)

            def forward(self, y):
                return self.fc(self.emb(y))

        ops = ops_of(Label(), torch.tensor([1, 2, 3]))
        self.assertEqual([(op["op"], op.get("kind")) for op in ops],
                         [("embedding", "token"), ("dense", None)])


class GroupedConvTest(unittest.TestCase):
    def test_depthwise_and_grouped_convolutions(self):
        model = DepthwiseSeparable()
        d = nino.describe_model(model, torch.randn(2, 1, 12, 12))
        self.assertEqual(d["version"], 3)
        dense = {op["weight"]: op for op in d["ops"] if op["op"] == "dense"}
        self.assertEqual(dense["dw.weight"]["groups"], 8)
        self.assertEqual(dense["grouped.weight"]["groups"], 4)
        self.assertNotIn("groups", dense["pw.weight"])
        self.assertNotIn("groups", dense["stem.weight"])
        describe.check_description(d, [(n, tuple(p.shape)) for n, p in model.named_parameters()])
        nodes, edges = graph_size(d, model)
        # input 1; stem 8 + bn0 2; dw 8 + bn1 2; pw 16 + 1; grouped 16 + 1; fc 10 + 1.
        self.assertEqual(nodes, 1 + 10 + 10 + 17 + 17 + 11)
        # Conv edges are out * in / groups: stem 8, dw 8, pw 128, grouped 16 * 4.
        self.assertEqual(edges, 8 + 16 + 8 + 16 + 128 + 16 + 64 + 16 + 160 + 10 + nodes)

    def test_functional_grouped_conv(self):
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.w = nn.Parameter(torch.randn(6, 2, 3, 3))
                self.fc = nn.Linear(6, 2)

            def forward(self, x):
                x = F.conv2d(x, self.w, None, 1, 1, 1, 2)  # groups 2 positionally
                return self.fc(x.mean((2, 3)))

        d = nino.describe_model(Net(), torch.randn(1, 4, 5, 5))
        self.assertEqual(d["version"], 3)
        self.assertEqual([op.get("groups") for op in d["ops"] if op["op"] == "dense"], [2, None])

    def test_check_description_reads_groups(self):
        shapes = [("c.weight", (8, 2, 3, 3))]
        ok = {"version": 3, "ops": [{"op": "input", "output": "x", "units": 8},
                                    {"op": "dense", "output": "c", "inputs": ["x"],
                                     "weight": "c.weight", "groups": 4}]}
        describe.check_description(ok, shapes)
        self.assertEqual(describe.lowest_version(ok["ops"]), 3)

        def refused(edit, pattern, params=shapes):
            d = copy.deepcopy(ok)
            edit(d)
            with self.assertRaisesRegex(ValueError, pattern):
                describe.check_description(d, params)

        refused(lambda d: d.update(version=2), r"op 1 \('c'\): groups is version 3, the "
                r"description says version 2")
        refused(lambda d: d["ops"][1].update(groups=0), r"'groups' must be an integer >= 1")
        refused(lambda d: d["ops"][1].update(groups=2), r"weight 'c.weight' of shape "
                r"\[8, 2, 3, 3\] with 2 groups does not take the 8 units")
        refused(lambda d: d["ops"][1].update(groups=3), r"is not a convolution \(out, in / 3, "
                r"kh, kw\) with 3 groups")
        refused(lambda d: d["ops"][1].update(transposed=True),
                r"'groups' and 'transposed' exclude each other")
        refused(lambda d: d["ops"][0].update(groups=2), r"unknown or misplaced field")

    def test_protocol_message_carries_groups(self):
        d = nino.describe_model(DepthwiseSeparable(), torch.randn(1, 1, 8, 8))
        m = describe.description_to_proto(d)
        self.assertEqual(m.version, 3)
        self.assertEqual([op.groups for op in m.ops if op.op == "dense"], [0, 8, 0, 4, 0])


class Version4Test(unittest.TestCase):
    """multiply and kv_heads: a traced gated MLP, products that are aliases or refused,
    describe_llama (the fixture common/nino/testdata/llama_tiny_description.json, which the C++
    DescribeLlama also writes: llama_description_test), check_description and the protocol."""

    def test_gated_mlp_traces_to_multiply(self):
        model = GatedMlp()
        d = nino.describe_model(model, torch.randn(2, 12))
        self.assertEqual(d["version"], 4)
        kinds = [op["op"] for op in d["ops"]]
        self.assertEqual(kinds, ["input", "dense", "alias", "dense", "multiply", "dense", "add",
                                 "dense"])
        self.assertEqual(d["ops"][4]["inputs"], ["silu", "up"])
        self.assertEqual(d["ops"][5]["inputs"], ["mul"])
        describe.check_description(d, [(n, tuple(p.shape)) for n, p in model.named_parameters()])
        # x 12, gate 20, up 20, down 12, head 3 + its bias; edges: weights 240 * 3 + 36, the
        # bias 3, the gate -> up ties 20, the residual 12.
        nodes, edges = graph_size(d, model)
        self.assertEqual(nodes, 12 + 20 + 20 + 12 + 3 + 1)
        self.assertEqual(edges, 240 * 3 + 36 + 3 + 20 + 12 + nodes)

    def test_products_with_a_number_or_with_itself_are_aliases(self):
        class Scaled(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4)
                self.out = nn.Linear(4, 2)

            def forward(self, x):
                h = 0.5 * self.fc(x) * 2
                h = h * torch.sigmoid(h)  # swish by hand
                return self.out(h.mul(3.0))

        d = nino.describe_model(Scaled(), torch.randn(2, 4))
        self.assertEqual(d["version"], 1)
        self.assertEqual([op["op"] for op in d["ops"]],
                         ["input", "dense", "alias", "alias", "alias", "alias", "alias", "dense"])
        self.assertEqual([op.get("kind") for op in d["ops"][2:7]],
                         ["scale", "scale", "sigmoid", "mul", "scale"])

    def test_products_that_are_not_in_the_description_are_refused(self):
        class SqueezeExcite(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 4, 3)
                self.se = nn.Conv2d(4, 4, 1)
                self.fc = nn.Linear(4, 2)

            def forward(self, x):
                x = self.conv(x)
                x = x * torch.sigmoid(self.se(F.adaptive_avg_pool2d(x, 1)))  # torchvision's SE
                return self.fc(x.mean((2, 3)))

        with self.assertRaisesRegex(ValueError, r"broadcasting products, such as "
                                    r"squeeze-and-excitation gates"):
            nino.describe_model(SqueezeExcite(), torch.randn(2, 1, 6, 6))

        class LayerScale(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(4, 4)
                self.gamma = nn.Parameter(torch.ones(4))

            def forward(self, x):
                return self.gamma * self.fc(x)

        with self.assertRaisesRegex(ValueError, r"parameter 'gamma' multiplies a tensor"):
            nino.describe_model(LayerScale(), torch.randn(2, 4))

    def test_describe_llama_writes_the_fixture_of_the_cpp_describer(self):
        with open(_find("common/nino/testdata/llama_tiny_description.json")) as f:
            fixture = json.load(f)
        model = TinyLlama(vocab=6, d=8, layers=2, heads=4, kv_heads=2, ff=12)
        self.assertEqual(nino.describe_llama(model, 4, 2), fixture)
        # The (name, shape) list works as the model does.
        named = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
        self.assertEqual(describe.describe_llama(named, 4, 2), fixture)
        # Multi-head attention (kv_heads = heads) says no kv_heads; tied: no lm_head.
        d = nino.describe_llama(TinyLlama(kv_heads=4, tie=True), 4)
        self.assertEqual(d["version"], 4)
        self.assertNotIn("kv_heads", d["ops"][2])
        self.assertEqual(d["ops"][-1]["op"], "norm")

    def test_describe_llama_refuses_other_layouts(self):
        model = TinyLlama()
        named = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
        with self.assertRaisesRegex(ValueError, r"kv_heads 3 does not divide num_heads 4"):
            nino.describe_llama(model, 4, 3)
        with self.assertRaisesRegex(ValueError, r"key weight 'model.layers.0.self_attn.k_proj."
                                    r"weight' of shape \[4, 8\] is not \(2, 8\) \(1 of 4 "
                                    r"heads\)"):
            nino.describe_llama(model, 4, 1)
        with_bias = named[:2] + [("model.layers.0.self_attn.q_proj.bias", (8,))] + named[2:]
        with self.assertRaisesRegex(ValueError, r"unexpected: \['model.layers.0.self_attn.q_proj."
                                    r"bias'\]"):
            nino.describe_llama(with_bias, 4, 2)
        with self.assertRaisesRegex(ValueError, r"no decoder layers"):
            nino.describe_llama([("model.embed_tokens.weight", (6, 8))], 4, 2)

    def test_check_description_reads_version_4(self):
        model = TinyLlama()
        params = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
        d = nino.describe_llama(model, 4, 2)
        att = 2

        def refused(edit, pattern):
            bad = copy.deepcopy(d)
            edit(bad)
            with self.assertRaisesRegex(ValueError, pattern):
                describe.check_description(bad, params)

        refused(lambda x: x.update(version=3),
                r"op 2 \('layers.0.self_attn'\): kv_heads is version 4, the description says "
                r"version 3")
        refused(lambda x: (x["ops"][att].pop("kv_heads"), x.update(version=4)),
                r"key weight .* is not \(8, 8\)")
        refused(lambda x: x["ops"][att].update(kv_heads=3), r"kv_heads 3 does not divide heads 4")
        refused(lambda x: x["ops"][att].update(kv_heads=0), r"'kv_heads' must be an integer >= 1")
        refused(lambda x: x["ops"][1].update(kv_heads=2), r"unknown or misplaced field")
        refused(lambda x: x["ops"][9].update(inputs=["layers.0.act_fn", "layers.0.o_proj",
                                                     "layers.0.up_proj"]),
                r"a 'multiply' op takes 2 input group\(s\), got 3")
        self.assertEqual(describe.lowest_version(d["ops"]), 4)

    def test_protocol_message_carries_kv_heads_and_multiply(self):
        m = describe.description_to_proto(nino.describe_llama(TinyLlama(), 4, 2))
        self.assertEqual(m.version, 4)
        self.assertEqual([op.kv_heads for op in m.ops if op.op == "attention"], [2, 2])
        self.assertEqual(sum(op.op == "multiply" for op in m.ops), 2)


class TorchvisionTest(unittest.TestCase):
    """Models users take from torchvision, described without any code of theirs."""

    def assert_described(self, model, x, version):
        d = nino.describe_model(model, x)
        self.assertEqual(d["version"], version)
        describe.check_description(d, [(n, tuple(p.shape)) for n, p in model.named_parameters()])
        return d

    def test_resnet18_and_densenet(self):
        self.assert_described(torchvision.models.resnet18(num_classes=10),
                              torch.randn(1, 3, 32, 32), 1)
        # DenseNet concatenates every layer's output; its first layer cats a list of one.
        dense = torchvision.models.DenseNet(growth_rate=4, block_config=(2, 2),
                                            num_init_features=8, bn_size=2, num_classes=10)
        d = self.assert_described(dense, torch.randn(1, 3, 32, 32), 1)
        self.assertTrue(any(op["op"] == "concat" for op in d["ops"]))

    def test_mobilenet_v2(self):
        model = torchvision.models.mobilenet_v2(num_classes=10, width_mult=0.25)
        d = self.assert_described(model, torch.randn(1, 3, 32, 32), 3)
        depthwise = [op for op in d["ops"] if op.get("groups", 1) > 1]
        self.assertEqual(len(depthwise), 17)  # one depthwise conv per inverted residual block

    def test_vision_transformer_reads_shapes(self):
        # torchvision's forward unpacks `n, c, h, w = x.shape`, which plain torch.fx cannot
        # trace: describe_model traces it again with the example input's shapes.
        model = torchvision.models.VisionTransformer(image_size=28, patch_size=7, num_layers=2,
                                                     num_heads=4, hidden_dim=64, mlp_dim=256,
                                                     num_classes=10)
        with self.assertRaises(Exception):
            torch.fx.symbolic_trace(model)
        d = self.assert_described(model, torch.randn(2, 3, 28, 28), 2)
        self.assertEqual(sum(op["op"] == "attention" for op in d["ops"]), 2)
        # The same network as the benchmark's ViT (3 input channels here, 1 there).
        ours = nino.describe_model(ViT(), torch.randn(2, 1, 28, 28))
        self.assertEqual([op["op"] for op in d["ops"] if op["op"] != "alias"],
                         [op["op"] for op in ours["ops"] if op["op"] != "alias"])


class ShapeReadingTest(unittest.TestCase):
    def test_shape_reading_forward_is_traced_and_leaves_the_model_unchanged(self):
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 4, 3)
                self.bn = nn.BatchNorm2d(4)
                self.drop = nn.Dropout(0.5)
                self.fc = nn.Linear(4 * 4 * 4, 2)

            def forward(self, x):
                b, c, h, w = x.shape
                torch._assert(h == w, "square images")
                x = self.drop(self.bn(self.conv(x)))
                return self.fc(x.reshape(b, -1))

        model = Net()
        model.train()
        before = copy.deepcopy(model.state_dict())
        x = torch.randn(2, 1, 6, 6)
        torch.manual_seed(7)
        expected_next = torch.rand(3)
        torch.manual_seed(7)
        d = nino.describe_model(model, x)
        self.assertTrue(torch.equal(torch.rand(3), expected_next))  # the random state is kept
        self.assertEqual([op["op"] for op in d["ops"]],
                         ["input", "dense", "norm", "alias", "flatten", "dense"])
        self.assertTrue(model.training)
        for k, v in model.state_dict().items():
            self.assertTrue(torch.equal(v, before[k]), k)  # BatchNorm statistics not updated


class RefusalTest(unittest.TestCase):
    def assert_refused(self, model, x, *patterns):
        with self.assertRaises(ValueError) as cm:
            nino.describe_model(model, x)
        msg = str(cm.exception)
        for p in patterns:
            self.assertRegex(msg, p)
        self.assertIn(SUPPORTED, msg)
        return msg

    def test_cross_attention(self):
        class Cross(nn.Module):
            def __init__(self):
                super().__init__()
                self.proj = nn.Linear(8, 8)
                self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

            def forward(self, x):
                h = self.proj(x)
                return self.attn(h, x, x)[0]

        msg = self.assert_refused(Cross(), torch.randn(2, 5, 8), r"fx node 'attn'",
                                  r"call_module MultiheadAttention", r"module 'attn'",
                                  r"cross-attention \(query, key and value are not the same "
                                  r"tensor: proj, x, x\) is not mapped")
        self.assertIn("describe_test.py", msg)  # the user's source line

    def test_multihead_attention_options(self):
        class Attn(nn.Module):
            def __init__(self, **kw):
                super().__init__()
                self.attn = nn.MultiheadAttention(8, 2, **kw)

            def forward(self, x):
                return self.attn(x, x, x)[0]

        class KDim(nn.Module):
            def __init__(self):
                super().__init__()
                self.down = nn.Linear(8, 4)
                self.attn = nn.MultiheadAttention(8, 2, batch_first=True, kdim=4, vdim=4)

            def forward(self, x):
                y = self.down(x)
                return self.attn(x, y, y)[0]

        x = torch.randn(2, 5, 8)
        self.assert_refused(KDim(), x, r"fx node 'attn'",
                            r"kdim / vdim \(4 / 4\) != embed_dim \(8\) is not mapped")
        self.assert_refused(Attn(batch_first=True, add_bias_kv=True), x,
                            r"add_bias_kv=True is not mapped")
        # A (B, T, d) model input is batch-first: batch_first=False needs a transpose first.
        self.assert_refused(Attn(), x, r"fx node 'attn'",
                            r"batch_first=False\) reads \(T, B, d\), but its input has shape "
                            r"\[2, 5, 8\] with units on axis 2 and tokens on axis 1")

        class Weights(nn.Module):
            def __init__(self):
                super().__init__()
                self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
                self.fc = nn.Linear(5, 2)

            def forward(self, x):
                return self.fc(self.attn(x, x, x)[1])

        self.assert_refused(Weights(), x, r"fx node 'getitem'",
                            r"the attention weights \(\[1\] of nn.MultiheadAttention's result\) "
                            r"have no description op")

        class Layer(nn.Module):
            def __init__(self):
                super().__init__()
                self.layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)

            def forward(self, x):
                return self.layer(x)

        self.assert_refused(Layer(), x, r"fx node 'layer'",
                            r"nn.TransformerEncoderLayer is traced as one module.*write the "
                            r"block with nn.MultiheadAttention.*or pass model_description=")

    def test_attention_written_by_hand(self):
        class Hand(nn.Module):
            def __init__(self, how):
                super().__init__()
                self.how = how
                self.q = nn.Linear(8, 8)
                self.k = nn.Linear(8, 8)
                self.v = nn.Linear(8, 8)

            def forward(self, x):
                q, k, v = self.q(x), self.k(x), self.v(x)
                if self.how == "transpose":
                    a = (q @ k.transpose(-2, -1)).softmax(-1)
                elif self.how == "einsum":
                    a = torch.einsum("btd,bsd->bts", q, k).softmax(-1)
                else:  # split the heads
                    return q.view(x.shape[0], x.shape[1], 2, 4) + k.view(x.shape[0], -1, 2, 4)
                return a @ v

        x = torch.randn(2, 5, 8)
        hint = r"attention written by hand .* use nn.MultiheadAttention, or pass model_description="
        self.assert_refused(Hand("transpose"), x, r"fx node 'transpose'",
                            r"transpose \[0, 2, 1\] of shape \[2, 5, 8\] moves the units", hint)
        self.assert_refused(Hand("einsum"), x, r"fx node 'einsum'",
                            r"'einsum' of two traced tensors", hint)
        self.assert_refused(Hand("heads"), x, r"fx node 'view'",
                            r"view from \[2, 5, 8\] to \[2, 5, 2, 4\] is neither", hint)

    def test_parameters_used_in_other_ways(self):
        class Vit(ViT):
            def __init__(self, how):
                super().__init__(d=8, depth=1, heads=2)
                self.how = how

            def forward(self, x):
                x = self.patch(x).flatten(2).transpose(1, 2)
                cls = self.cls.expand(x.shape[0], -1, -1)
                if self.how == "cat units":
                    x = torch.cat([cls.expand(-1, 16, -1), x], dim=2)[..., :8]
                elif self.how == "positions first":
                    x = torch.cat([cls, x + self.pos[:, 1:]], dim=1)
                elif self.how == "cls twice":
                    x = torch.cat([cls, torch.cat([cls, x], dim=1)], dim=1)
                elif self.how == "pos shape":
                    x = torch.cat([cls, x], dim=1) + self.pos.expand(x.shape[0], -1, -1)
                elif self.how == "slice":
                    x = (torch.cat([cls, x], dim=1) + self.pos)[:, 1:]
                else:
                    x = torch.cat([cls, x], dim=1) * self.pos
                return self.head(self.ln(self.blocks(x)[:, 0]))

        x = torch.randn(2, 1, 28, 28)
        self.assert_refused(Vit("cat units"), x, r"fx node 'cat'",
                            r"parameter 'cls' is concatenated along dim 2, not along the token "
                            r"axis of a token sequence \(shape \[2, 16, 8\], tokens on axis 1\)")
        self.assert_refused(Vit("positions first"), x, r"fx node 'getitem_1'",
                            r"parameter 'pos' is used by 'getitem'")
        self.assert_refused(Vit("cls twice"), x, r"fx node 'cat_1'",
                            r"parameter 'cls' is used twice \(by fx nodes 'cat' and 'cat_1'\)")
        self.assert_refused(Vit("pos shape"), x, r"fx node 'add'",
                            r"parameter 'pos' of shape \[2, 17, 8\] does not broadcast over the "
                            r"batch")
        self.assert_refused(Vit("slice"), x, r"fx node 'getitem_1'",
                            r"indexing or slicing a tensor has no description op \(only "
                            r"selecting one token")
        self.assert_refused(Vit("mul"), x, r"fx node 'mul'",
                            r"parameter 'pos' multiplies a tensor")

        class Pos(nn.Module):
            def __init__(self, shape):
                super().__init__()
                self.fc = nn.Linear(4, 4)
                self.pos = nn.Parameter(torch.zeros(shape))

            def forward(self, x):
                return self.fc(x) + self.pos

        self.assert_refused(Pos((2, 5, 4)), torch.randn(2, 5, 4), r"fx node 'add'",
                            r"parameter 'pos' of shape \[2, 5, 4\] does not broadcast over the "
                            r"batch of the token sequence \[2, 5, 4\]")
        self.assert_refused(Pos((5, 1)), torch.randn(2, 5, 4), r"parameter 'pos' of shape "
                            r"\[5, 1\] does not broadcast")
        self.assertEqual([op["op"] for op in ops_of(Pos((5, 4)), torch.randn(2, 5, 4))],
                         ["input", "dense", "embedding"])

    def test_embedding_inputs(self):
        class Emb(nn.Module):
            def __init__(self, how):
                super().__init__()
                self.how = how
                self.emb = nn.Embedding(10, 4)
                self.pe = nn.Embedding(10, 4)
                self.fc = nn.Linear(4, 2)

            def forward(self, x):
                if self.how == "float":
                    return self.fc(self.emb(self.fc(x).long()))
                if self.how == "computed":
                    return self.fc(self.emb(x * 2))
                if self.how == "positions alone":
                    return self.fc(self.pe(torch.arange(x.shape[1])))
                return self.fc(self.emb(x).sum(1))

        ids = torch.randint(0, 5, (2, 3))
        self.assert_refused(Emb("float"), torch.randn(2, 4), r"fx node 'long'",
                            r"'long' has no description op")
        self.assert_refused(Emb("computed"), ids, r"fx node 'emb'",
                            r"nn.Embedding reads ids computed by other ops; its ids must be an "
                            r"integer model input \(token ids\) or torch.arange \(positions\)")
        self.assert_refused(Emb("positions alone"), ids, r"fx node 'fc'",
                            r"Linear reads the position embedding 'pe' \(nn.Embedding of "
                            r"torch.arange ids\), which must be added to a token sequence")
        self.assert_refused(Emb("sum"), ids, r"fx node 'sum_1'", r"'sum' has no description op")

        class Bag(nn.Module):
            def __init__(self):
                super().__init__()
                self.bag = nn.EmbeddingBag(10, 4)

            def forward(self, x):
                return self.bag(x)

        self.assert_refused(Bag(), ids, r"fx node 'bag'", r"nn.EmbeddingBag .* has no "
                            r"description op; nn.Embedding has")

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
                            r"reshape from \[2, 4, 6, 6\] to \[8, 36\] is neither a flatten from "
                            r"dim 1 \(B, -1\) nor from dim 2")

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

        # Patch tokens: the linear layer reads the 4 channels on the last axis; no version-2 op
        # or field, so version 1.
        d = nino.describe_model(Net("flatten2"), torch.randn(2, 1, 28, 28))
        self.assertEqual(d["version"], 1)
        self.assertEqual([(op["op"], op.get("kind")) for op in d["ops"]],
                         [("input", None), ("dense", None), ("alias", "to_tokens"),
                          ("dense", None)])
        self.assert_refused(Net("permute"), torch.randn(2, 1, 28, 28), r"fx node 'permute'",
                            r"permute \[0, 2, 3, 1\] of shape \[2, 4, 4, 4\] moves the units "
                            r"from axis 1 to axis 3")

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
        d["version"] = 5
        self.refused(d, "version 5 is not supported")
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

    def test_version_2(self):
        model = ViT(d=8, depth=1, heads=2)
        params = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
        d = nino.describe_model(model, torch.randn(1, 1, 28, 28))
        describe.check_description(d, params)
        by_kind = {op["op"]: i for i, op in enumerate(d["ops"])}
        att, emb = by_kind["attention"], 3

        def refused(change, pattern):
            bad = copy.deepcopy(d)
            change(bad)
            with self.assertRaisesRegex(ValueError, pattern):
                describe.check_description(bad, params)

        refused(lambda x: x.update(version=1),
                r"op 3 \('cat'\): embedding is version 2, the description says version 1")
        refused(lambda x: x["ops"][att].update(query="q.weight"),
                r"op %d \('blocks_0_attn.attention'\): an 'attention' op has either 'weight' "
                r"\(packed\) or query / key / value \(split\), not both \(query\)" % att)
        refused(lambda x: x["ops"][att].pop("weight"), r"needs 'weight' \(packed q\|k\|v\) or "
                r"all of query, key, value")
        refused(lambda x: x["ops"][att].update(heads=3),
                r"8 query units are not divisible by 3 heads")
        refused(lambda x: x["ops"][att].update(heads=0), r"'heads' must be an integer >= 1")
        refused(lambda x: x["ops"][att].update(transposed=False),
                r"'transposed' must be true when present")
        refused(lambda x: x["ops"][att].update(transposed=True),
                r"packed weight 'blocks.0.attn.in_proj_weight' of shape \[24, 8\] is not "
                r"\(3 D, 8\) stored \(in, out\)")
        refused(lambda x: x["ops"][emb].update(kind="class"),
                r"an 'embedding' op's kind is 'token' or 'position', got 'class'")
        refused(lambda x: x["ops"][emb].update(weight="head.weight"),
                r"op 3 \('cat'\): table 'head.weight' of shape \[10, 8\] has rows of 8 units"
                r"|parameter 'head.weight' appears twice")
        refused(lambda x: x["ops"][1].update(heads=2),
                r"op 1 \('patch'\): unknown or misplaced field\(s\) \['heads'\]")
        # A version-1 description whose dense op says transposed.
        v1 = copy.deepcopy(self.d)
        v1["ops"][8]["transposed"] = True
        with self.assertRaisesRegex(ValueError, r"op 8 \('fc1'\): transposed is version 2, the "
                                    r"description says version 1"):
            describe.check_description(v1, self.params)
        v1["version"] = 2  # (120, 256) read as (in, out): 120 inputs, the group has 256
        with self.assertRaisesRegex(ValueError, r"weight 'fc1.weight' of shape \[120, 256\] "
                                    r"does not take the 256 units"):
            describe.check_description(v1, self.params)
        split = {"version": 2, "ops": [
            {"op": "input", "output": "x", "units": 4},
            {"op": "attention", "output": "a", "inputs": ["x"], "heads": 2, "query": "q",
             "key": "k", "value": "v", "key_bias": "kb"},
            {"op": "dense", "output": "o", "inputs": ["a"], "weight": "o"}]}
        describe.check_description(split, [("q", (4, 4)), ("k", (4, 4)), ("v", (4, 4)),
                                           ("kb", (4,)), ("o", (3, 4))])
        with self.assertRaisesRegex(ValueError, r"value weight 'v' of shape \[2, 4\] is not "
                                    r"\(4, 4\) with q, k, v of equal size"):
            describe.check_description(split, [("q", (4, 4)), ("k", (4, 4)), ("v", (2, 4)),
                                               ("kb", (4,)), ("o", (3, 4))])

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

    def test_version_2_fields(self):
        from nino.v1 import nowcaster_pb2 as pb2
        d = nino.describe_model(ViT(d=8, depth=1, heads=2), torch.randn(1, 1, 28, 28))
        msg = describe.description_to_proto(d)
        self.assertEqual(msg.version, 2)
        att = [m for m in msg.ops if m.op == "attention"][0]
        self.assertEqual((att.heads, att.weight, att.bias, att.transposed),
                         (2, "blocks.0.attn.in_proj_weight", "blocks.0.attn.in_proj_bias", False))
        self.assertEqual([(m.op, m.kind, m.weight) for m in msg.ops if m.op == "embedding"],
                         [("embedding", "token", "cls"), ("embedding", "position", "pos")])
        split = {"version": 2, "ops": [
            {"op": "input", "output": "x", "units": 4},
            {"op": "attention", "output": "a", "inputs": ["x"], "heads": 1, "query": "q",
             "key": "k", "value": "v", "query_bias": "qb", "key_bias": "kb", "value_bias": "vb"},
            {"op": "dense", "output": "o", "inputs": ["a"], "weight": "o", "transposed": True}]}
        msg = describe.description_to_proto(split)
        a = msg.ops[1]
        self.assertEqual((a.query, a.key, a.value, a.query_bias, a.key_bias, a.value_bias),
                         ("q", "k", "v", "qb", "kb", "vb"))
        self.assertTrue(msg.ops[2].transposed)
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
        # A ViT registers version 2 with the attention and embedding fields.
        model = ViT(d=8, depth=1, heads=2)
        opt = make_opt(model, self.server.address, example_input=torch.randn(2, 1, 28, 28))
        opt.close()
        req = self.server.registrations[n + 1]
        self.assertEqual((req.graph.kind, req.graph.description.version), ("described", 2))
        self.assertEqual([(op.op, op.heads) for op in req.graph.description.ops
                          if op.op == "attention"], [("attention", 2)])

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
