"""Models of the describe_model tests (an MLP on images, the FM-16 CNN, LeNet-5, a small ResNet)
and two helpers: the chain form of a description and the graph size its contract gives
(docs/GRAPH_DESCRIPTION.md, "Invariants")."""

import torch
import torch.nn as nn
import torch.nn.functional as F


def Mlp():  # noqa: N802  a model class in the tests' eyes
    """784-32-16-10 on 28x28 images (fc.1, fc.3, fc.5): the flatten of the input folds into the
    input group."""
    return _Seq(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                nn.Linear(16, 10))


def fm16():
    """The official FM-16 CNN (trainer/models.cc; python/bench/bench_client.py): fc.0.weight,
    fc.0.bias, ..., fc.8.bias."""
    return _Seq(nn.Conv2d(1, 16, 3, stride=2), nn.ReLU(),
                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


class _Seq(nn.Module):
    """A module whose layers are `fc.<i>`."""

    def __init__(self, *layers):
        super().__init__()
        self.fc = nn.Sequential(*layers)

    def forward(self, x):
        return self.fc(x)


class LeNet5(nn.Module):
    """conv5x5 1->6, maxpool, conv5x5 6->16, maxpool, flatten 16*4*4, fc 120, 84, 10."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class BasicBlock(nn.Module):
    """The ResNet basic block: two 3x3 convs with BatchNorm; an identity shortcut, or a 1x1
    conv + BatchNorm projection when the shape changes."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """Stem 1->8, a block 8->8 (identity shortcut), a block 8->16 stride 2 (projection), global
    average pool, fc 16->10."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU())
        self.layer1 = BasicBlock(8, 8, 1)
        self.layer2 = BasicBlock(8, 16, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def chain_form(description):
    """The description as a strict chain [("input", units), ("dense", weight, bias),
    ("norm", weight, bias), ("flatten", positions), ...] with the aliases resolved;
    AssertionError if it is no chain."""
    chain, where = [], {}
    for op in description["ops"]:
        kind = op["op"]
        if kind == "alias":
            where[op["output"]] = where[op["inputs"][0]]
            continue
        if kind == "input":
            assert not chain, "a second input"
            chain.append(("input", op["units"]))
        elif kind in ("dense", "norm", "flatten"):
            assert where[op["inputs"][0]] == len(chain) - 1, "%s does not read the previous " \
                "op" % op["output"]
            chain.append((kind, op["positions"]) if kind == "flatten" else
                         (kind, op.get("weight"), op.get("bias")))
        else:
            raise AssertionError("a %s op is not in a chain" % kind)
        where[op["output"]] = len(chain) - 1
    return chain


def graph_size(description, model):
    """(nodes, edges) of the graph built from the description (the contract's closed form):
    nodes = input units + units of dense and flatten groups + one per 1-D parameter; edges =
    parameter numels (conv: out * in) + flatten ties + residual edges + one self-loop per
    node."""
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    units, nodes, edges = {}, 0, 0
    for op in description["ops"]:
        kind, ins = op["op"], op.get("inputs", [])
        if kind == "input":
            units[op["output"]] = op["units"]
            nodes += op["units"]
        elif kind == "dense":
            w = shapes[op["weight"]]
            units[op["output"]] = w[0]
            nodes += w[0]
            edges += w[0] * w[1]
            if op.get("bias"):
                nodes += 1
                edges += w[0]
        elif kind == "norm":
            units[op["output"]] = units[ins[0]]
            for role in ("weight", "bias"):
                if op.get(role):
                    nodes += 1
                    edges += units[ins[0]]
        elif kind == "flatten":
            units[op["output"]] = units[ins[0]] * op["positions"]
            nodes += units[op["output"]]
            edges += units[op["output"]]
        elif kind == "add":
            units[op["output"]] = units[ins[0]]
            edges += units[ins[0]]
        elif kind == "concat":
            units[op["output"]] = sum(units[x] for x in ins)
        else:
            units[op["output"]] = units[ins[0]]
    return nodes, edges + nodes
