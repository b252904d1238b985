#!/usr/bin/python3
"""Small ONNX models in the older opset forms of Split, Squeeze/Unsqueeze, Slice, Clip, Pad,
Softmax, Dropout, BatchNormalization..., plus the bad files the refusal tests read, for
tests/onnx/test_opsets.cpp and test_errors.cpp. Expected outputs come from numpy / PyTorch, never
from qbench. Writes OUT_DIR/<case>.onnx, <case>.input.npy, <case>.expected.npy and
OUT_DIR/cases.txt (one line per case: name dynamic_batch(0|1) atol).

usage: make_opset_fixtures.py OUT_DIR
"""
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(0)
cases = []


def f32(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def model(nodes, inputs, outputs, inits=(), opset=13, name="g"):
    g = helper.make_graph(nodes, name, inputs, outputs, initializer=[numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="qbench-fixtures")
    m.ir_version = 7 if opset < 15 else 8
    return m


def vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def case(name, m, x, y, dynamic=0, atol=1e-5, check=True):
    if check:
        onnx.checker.check_model(m)
    onnx.save(m, os.path.join(OUT, name + ".onnx"))
    np.save(os.path.join(OUT, name + ".input.npy"), x.astype(np.float32))
    np.save(os.path.join(OUT, name + ".expected.npy"), np.asarray(y, dtype=np.float32))
    cases.append(f"{name} {dynamic} {atol}")


x4 = f32(2, 4, 6, 6)
t4 = torch.from_numpy(x4)

# Split (opset 11: `split` attribute; equal parts without it), re-joined so the model has one output.
for opset in (9, 11):
    m = model([helper.make_node("Split", ["x"], ["a", "b"], axis=1, split=[1, 3]),
               helper.make_node("Mul", ["a", "k"], ["a2"]),
               helper.make_node("Concat", ["b", "a2"], ["y"], axis=1)],
              [vi("x", [2, 4, 6, 6])], [vi("y", [2, 4, 6, 6])], [("k", np.array([2.0], np.float32))], opset)
    case(f"split_attr_opset{opset}", m, x4, np.concatenate([x4[:, 1:], x4[:, :1] * 2], 1))
m = model([helper.make_node("Split", ["x"], ["a", "b"], axis=2),
           helper.make_node("Sub", ["a", "b"], ["y"])],
          [vi("x", [2, 4, 6, 6])], [vi("y", [2, 4, 3, 6])], opset=11)
case("split_equal_opset11", m, x4, x4[:, :, :3] - x4[:, :, 3:])

# Squeeze / Unsqueeze with `axes` attributes (opset < 13).
for opset in (9, 11):
    m = model([helper.make_node("ReduceMean", ["x"], ["r"], axes=[2, 3], keepdims=1),
               # ONNX 1.12's Squeeze-1 shape inference mishandles unsorted axes; opset 11 has them negative
               helper.make_node("Squeeze", ["r"], ["s"], axes=[2, 3] if opset < 11 else [-1, 2]),
               helper.make_node("Unsqueeze", ["s"], ["y"], axes=[0])],
              [vi("x", [2, 4, 6, 6])], [vi("y", [1, 2, 4])], opset=opset)
    case(f"squeeze_unsqueeze_opset{opset}", m, x4, x4.mean((2, 3))[None])

# Slice: opset 9 attributes (with a negative start and an end past the dimension).
m = model([helper.make_node("Slice", ["x"], ["y"], starts=[1, -4], ends=[3, 1000], axes=[1, 3])],
          [vi("x", [2, 4, 6, 6])], [vi("y", [2, 2, 6, 4])], opset=9)
case("slice_attr_opset9", m, x4, x4[:, 1:3, :, -4:])

# Clip: opset 9/10 attributes, and min 0 max 6 after a conv (fused as ReLU6).
for opset in (9, 10):
    m = model([helper.make_node("Clip", ["x"], ["y"], min=-0.5, max=0.75)], [vi("x", [2, 4, 6, 6])],
              [vi("y", [2, 4, 6, 6])], opset=opset)
    case(f"clip_attr_opset{opset}", m, x4, np.clip(x4, -0.5, 0.75))
w = f32(8, 4, 3, 3, scale=0.5)
m = model([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
           helper.make_node("Clip", ["c"], ["y"], min=0.0, max=6.0)],
          [vi("x", ["N", 4, 6, 6])], [vi("y", ["N", 8, 6, 6])], [("w", w)], opset=9)
case("conv_relu6_attr_opset9", m, x4 * 4, F.hardtanh(F.conv2d(t4 * 4, torch.from_numpy(w), padding=1), 0, 6).numpy(), 1)

# Pad: opset 9/10 attributes (constant with a value, reflect, edge), opset 13 inputs (float reflect/edge).
for opset in (9, 10):
    for mode, tmode in (("constant", "constant"), ("reflect", "reflect"), ("edge", "replicate")):
        kw = dict(mode=mode, pads=[0, 0, 1, 2, 0, 0, 2, 1])
        if mode == "constant":
            kw["value"] = 1.5
        m = model([helper.make_node("Pad", ["x"], ["y"], **kw)], [vi("x", [2, 4, 6, 6])],
                  [vi("y", [2, 4, 9, 9])], opset=opset)
        ref = F.pad(t4, (2, 1, 1, 2), mode=tmode, value=1.5) if mode == "constant" else F.pad(t4, (2, 1, 1, 2), mode=tmode)
        case(f"pad_{mode}_opset{opset}", m, x4, ref.numpy())
for mode, tmode in (("reflect", "reflect"), ("edge", "replicate")):
    m = model([helper.make_node("Pad", ["x", "p"], ["y"], mode=mode)], [vi("x", [2, 4, 6, 6])],
              [vi("y", [2, 4, 9, 9])], [("p", np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64))], opset=13)
    case(f"pad_{mode}_opset13", m, x4, F.pad(t4, (2, 1, 1, 2), mode=tmode).numpy())

# Softmax before opset 13 coerces the input to 2-D at `axis` (not a per-axis softmax).
x3 = f32(2, 3, 5)
for opset in (9, 11):
    m = model([helper.make_node("Softmax", ["x"], ["y"], axis=1)], [vi("x", [2, 3, 5])], [vi("y", [2, 3, 5])],
              opset=opset)
    flat = x3.reshape(2, 15)
    e = np.exp(flat - flat.max(1, keepdims=True))
    case(f"softmax_coerced_opset{opset}", m, x3, (e / e.sum(1, keepdims=True)).reshape(2, 3, 5))

# Dropout with a ratio attribute (opset 9/10): identity at inference.
for opset in (9, 10):
    m = model([helper.make_node("Dropout", ["x"], ["y"], ratio=0.3)], [vi("x", [2, 4, 6, 6])], [vi("y", [2, 4, 6, 6])],
              opset=opset)
    case(f"dropout_ratio_opset{opset}", m, x4, x4)

# Conv + BatchNormalization (opset 9: the BN partner) and a standalone BN; epsilon and momentum set.
g_, b_, mu, var = f32(8) * 0.2 + 1, f32(8) * 0.1, f32(8) * 0.1, np.abs(f32(8)) + 0.5
cb = f32(8) * 0.1
m = model([helper.make_node("Conv", ["x", "w", "cb"], ["c"], pads=[1, 1, 1, 1]),
           helper.make_node("BatchNormalization", ["c", "g", "b", "mu", "var"], ["bn"], epsilon=1e-3, momentum=0.8),
           helper.make_node("Relu", ["bn"], ["r"]),
           helper.make_node("BatchNormalization", ["r", "g", "b", "mu", "var"], ["y"], epsilon=1e-3)],
          [vi("x", ["N", 4, 6, 6])], [vi("y", ["N", 8, 6, 6])],
          [("w", w), ("cb", cb), ("g", g_), ("b", b_), ("mu", mu), ("var", var)], opset=9)
tt = lambda a: torch.from_numpy(a)
c = F.conv2d(t4, tt(w), tt(cb), padding=1)
r = F.relu(F.batch_norm(c, tt(mu), tt(var), tt(g_), tt(b_), False, 0.0, 1e-3))
case("conv_bn_opset9", m, x4, F.batch_norm(r, tt(mu), tt(var), tt(g_), tt(b_), False, 0.0, 1e-3).numpy(), 1)

# Cast float -> float (opset 9 and 13), Identity.
for opset in (9, 13):
    m = model([helper.make_node("Cast", ["x"], ["c"], to=TensorProto.FLOAT), helper.make_node("Identity", ["c"], ["y"])],
              [vi("x", [2, 4, 6, 6])], [vi("y", [2, 4, 6, 6])], opset=opset)
    case(f"cast_float_opset{opset}", m, x4, x4)

# Conv with auto_pad SAME_UPPER at stride 2 (asymmetric implicit padding), and explicit asymmetric pads.
for ap in ("SAME_UPPER", "SAME_LOWER"):
    m = model([helper.make_node("Conv", ["x", "w"], ["y"], auto_pad=ap, strides=[2, 2], kernel_shape=[3, 3])],
              [vi("x", [2, 4, 6, 6])], [vi("y", [2, 8, 3, 3])], [("w", w)], opset=11)
    # output 3: total pad = (3-1)*2+3-6 = 1 -> SAME_UPPER pads (0 begin, 1 end), SAME_LOWER (1, 0)
    pad = (0, 1, 0, 1) if ap == "SAME_UPPER" else (1, 0, 1, 0)
    case(f"conv_autopad_{ap.lower()}", m, x4, F.conv2d(F.pad(t4, pad), tt(w), stride=2).numpy())
m = model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 1, 2, 1], group=2)],
          [vi("x", [2, 4, 6, 6])], [vi("y", [2, 8, 6, 6])], [("w", w[:, :2].copy())], opset=11)
case("conv_asym_pads_groups", m, x4, F.conv2d(F.pad(t4, (1, 1, 0, 2)), tt(w[:, :2].copy()), groups=2).numpy())

# Pools: opset 9 AveragePool count_include_pad, opset 10 ceil mode with padding.
m = model([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                            count_include_pad=1)], [vi("x", [2, 4, 6, 6])], [vi("y", [2, 4, 3, 3])], opset=9)
case("avgpool_cip_opset9", m, x4, F.avg_pool2d(t4, 3, 2, 1, count_include_pad=True).numpy())
m = model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                            ceil_mode=1)], [vi("x", [2, 4, 6, 6])], [vi("y", [2, 4, 4, 4])], opset=10)
case("maxpool_ceil_pads_opset10", m, x4, F.max_pool2d(t4, 3, 2, 1, ceil_mode=True).numpy())

# The SysNoise pooling flips (issue 20): each pool case again with ceil_mode or count_include_pad
# flipped, expected from a numpy reference that enumerates every window (torch's rule for the output
# size: a last ceil-mode window starting in the right padding is dropped). OUT/modes.txt lists
# "case flip" lines; OUT/<case>.<flip>.expected.npy holds the flipped output.
modes = []


def pool_ref(x, k, s, pb, pe, ceil, cip, op):
    n, c, h, w = x.shape
    def size(i, pb_, pe_):
        span = i + pb_ + pe_ - k
        o = (-(-span // s) if ceil else span // s) + 1
        if ceil and (o - 1) * s >= i + pb_:
            o -= 1
        return o
    oh, ow = size(h, pb[0], pe[0]), size(w, pb[1], pe[1])
    y = np.zeros((n, c, oh, ow), np.float64)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s - pb[0], j * s - pb[1]
            r1, c1 = min(r0 + k, h + pe[0]), min(c0 + k, w + pe[1])  # the padded input's bounds
            rs, cs = slice(max(r0, 0), min(r1, h)), slice(max(c0, 0), min(c1, w))
            win = x[:, :, rs, cs]
            if op == "max":
                y[:, :, i, j] = win.max((2, 3))
            else:
                cnt = (r1 - r0) * (c1 - c0) if cip else win.shape[2] * win.shape[3]
                y[:, :, i, j] = win.sum((2, 3)) / cnt
    return y.astype(np.float32)


def flipped(name, x, flips):
    for flip, y in flips.items():
        np.save(os.path.join(OUT, f"{name}.{flip}.expected.npy"), y)
        modes.append(f"{name} {flip}")


flipped("avgpool_cip_opset9", x4, {"ceil": pool_ref(x4, 3, 2, (1, 1), (1, 1), True, True, "avg"),
                                   "cip": pool_ref(x4, 3, 2, (1, 1), (1, 1), False, False, "avg")})
flipped("maxpool_ceil_pads_opset10", x4, {"ceil": pool_ref(x4, 3, 2, (1, 1), (1, 1), False, False, "max")})
# Asymmetric pads (the executor pads explicitly and divides by precomputed counts): 7x7 padded at the end.
x7 = f32(2, 3, 7, 7)
m = model([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1])],
          [vi("x", [2, 3, 7, 7])], [vi("y", [2, 3, 3, 3])], opset=11)
case("avgpool_asym_pads", m, x7, pool_ref(x7, 3, 2, (0, 0), (1, 1), False, False, "avg"))
flipped("avgpool_asym_pads", x7, {"ceil": pool_ref(x7, 3, 2, (0, 0), (1, 1), True, False, "avg"),
                                  "cip": pool_ref(x7, 3, 2, (0, 0), (1, 1), False, True, "avg")})
with open(os.path.join(OUT, "modes.txt"), "w") as f:
    f.write("\n".join(modes) + "\n")

# Gemm opset 9 with alpha, beta, transA and a row bias; Flatten opset 9 axis 1; PRelu, LeakyRelu, HardSigmoid.
a2 = f32(5, 3)
B, C = f32(5, 4), f32(4)
m = model([helper.make_node("Gemm", ["a", "B", "C"], ["y"], alpha=0.5, beta=2.0, transA=1)],
          [vi("a", [5, 3])], [vi("y", [3, 4])], [("B", B), ("C", C)], opset=9)
case("gemm_attrs_opset9", m, a2, 0.5 * a2.T @ B + 2.0 * C)
slope = (f32(4, 1, 1) * 0.2).astype(np.float32)
m = model([helper.make_node("PRelu", ["x", "s"], ["p"]),
           helper.make_node("LeakyRelu", ["p"], ["l"], alpha=0.3),
           helper.make_node("HardSigmoid", ["l"], ["h"], alpha=0.3, beta=0.4),
           helper.make_node("Flatten", ["h"], ["y"], axis=1)],
          [vi("x", [2, 4, 6, 6])], [vi("y", [2, 144])], [("s", slope)], opset=9)
p = np.where(x4 >= 0, x4, x4 * slope)
l = np.where(p >= 0, p, p * 0.3)
case("prelu_leaky_hardsigmoid_opset9", m, x4, np.clip(0.3 * l + 0.4, 0, 1).reshape(2, 144))

# A dynamic reshape chain (opset 11): Shape -> Gather -> Div -> Unsqueeze -> Concat -> Reshape, the
# channel shuffle PyTorch exports, on a dynamic batch.
nodes = [helper.make_node("Shape", ["x"], ["sh"]),
         helper.make_node("Gather", ["sh", "i0"], ["n"], axis=0),
         helper.make_node("Gather", ["sh", "i1"], ["c"], axis=0),
         helper.make_node("Div", ["c", "two"], ["half"]),
         helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0]),
         helper.make_node("Unsqueeze", ["half"], ["h1"], axes=[0]),
         helper.make_node("Concat", ["n1", "two1", "h1", "m1"], ["shape"], axis=0),
         helper.make_node("Reshape", ["x", "shape"], ["r"]),
         helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3]),
         helper.make_node("Flatten", ["t"], ["y"], axis=1)]
m = model(nodes, [vi("x", ["N", 4, 6, 6])], [vi("y", ["N", 144])],
          [("i0", np.array(0, np.int64)), ("i1", np.array(1, np.int64)), ("two", np.array(2, np.int64)),
           ("two1", np.array([2], np.int64)), ("m1", np.array([-1], np.int64))], opset=11)
case("dynamic_reshape_chain_opset11", m, x4, x4.reshape(2, 2, 2, 36).transpose(0, 2, 1, 3).reshape(2, 144), 1)

# MatMul + Add (nn.Linear on a rank-3 input) and HardSwish (opset 14), Sqrt/Pow/Div/Tanh/Sigmoid.
W = f32(6, 5)
bias = f32(5)
m = model([helper.make_node("MatMul", ["x", "W"], ["mm"]), helper.make_node("Add", ["mm", "bias"], ["a"]),
           helper.make_node("HardSwish", ["a"], ["hs"]), helper.make_node("Mul", ["hs", "hs"], ["sq"]),
           helper.make_node("Sqrt", ["sq"], ["s"]), helper.make_node("Pow", ["s", "e"], ["p"]),
           helper.make_node("Tanh", ["p"], ["t"]), helper.make_node("Sigmoid", ["t"], ["sg"]),
           helper.make_node("Div", ["sg", "d"], ["y"])],
          [vi("x", [2, 3, 6])], [vi("y", [2, 3, 5])],
          [("W", W), ("bias", bias), ("e", np.array(1.5, np.float32)), ("d", np.array([0.5], np.float32))], opset=14)
xm = f32(2, 3, 6)
a = xm @ W + bias
hs = a * np.clip(a + 3, 0, 6) / 6
case("matmul_add_elementwise_opset14", m, xm, 1 / (1 + np.exp(-np.tanh(np.abs(hs) ** 1.5))) / 0.5)

# A tiny residual CNN (8/16 channels, 16x16 input) exported with BatchNormalization kept: the
# quantization tests' fast stand-in for ResNet-18 (reconstruction, lowering, training).
class Block(torch.nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, stride, bias=False),
                                                  torch.nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (self.downsample(x) if self.downsample is not None else x))


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 8, 3, 1, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.layer1 = torch.nn.Sequential(Block(8, 8, 1), Block(8, 16, 2))
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x):
        y = self.layer1(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(y, 1), 1))


torch.manual_seed(0)
tiny = Tiny()
with torch.no_grad():
    for mod in tiny.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.weight.uniform_(0.5, 1.5)
            mod.bias.normal_(0, 0.1)
            mod.running_mean.normal_(0, 0.1)
            mod.running_var.uniform_(0.5, 1.5)
tiny.eval()
xt = torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(3))
with torch.no_grad():
    np.save(os.path.join(OUT, "tiny_resnet.logits.npy"), tiny(xt).numpy())
np.save(os.path.join(OUT, "tiny_resnet.input.npy"), xt.numpy())
torch.onnx.export(tiny, xt, os.path.join(OUT, "tiny_resnet.onnx"), opset_version=13, input_names=["input"],
                  output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                  training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)

# ResNet-20 as lib/models builds it (CIFAR-style, 16/32/64 channels, 1x1 conv + BN shortcuts where
# the shape changes), for bench_onnx_executor: the same network hand-written and imported.
class Resnet20(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 16, 3, 1, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for s, w in enumerate((16, 32, 64)):
            for b in range(3):
                blocks.append(Block(cin, w, 2 if s > 0 and b == 0 else 1))
                cin = w
        self.layers = torch.nn.Sequential(*blocks)
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        y = self.layers(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(y, 1), 1))


r20 = Resnet20().eval()
torch.onnx.export(r20, torch.randn(2, 1, 28, 28), os.path.join(OUT, "resnet20.onnx"), opset_version=13,
                  input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                  training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)

with open(os.path.join(OUT, "cases.txt"), "w") as f:
    f.write("\n".join(cases) + "\n")

# ---- bad files (tests/onnx/test_errors.cpp) ----
ok = model([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
           [vi("x", ["N", 4, 6, 6])], [vi("y", ["N", 8, 6, 6])], [("w", w)], opset=13)
onnx.save(ok, os.path.join(OUT, "good.onnx"))
data = ok.SerializeToString()
open(os.path.join(OUT, "bad_truncated.onnx"), "wb").write(data[: len(data) // 2])
open(os.path.join(OUT, "bad_empty.onnx"), "wb").write(b"")
open(os.path.join(OUT, "bad_corrupt.onnx"), "wb").write(bytes(rng.integers(0, 256, 4096, dtype=np.uint8)))
open(os.path.join(OUT, "bad_text.onnx"), "w").write("this is not an onnx model\n" * 20)
# three unsupported operators (and a supported one between them)
m = model([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv_ok"),
           helper.make_node("LRN", ["c"], ["l"], size=3, name="lrn_1"),
           helper.make_node("Erf", ["l"], ["e"], name="erf_2"),
           helper.make_node("Relu", ["e"], ["r"], name="relu_ok"),
           helper.make_node("InstanceNormalization", ["r", "s", "b"], ["y"], name="inorm_3")],
          [vi("x", ["N", 4, 6, 6])], [vi("y", ["N", 8, 6, 6])],
          [("w", w), ("s", np.ones(8, np.float32)), ("b", np.zeros(8, np.float32))], opset=13)
onnx.save(m, os.path.join(OUT, "bad_unsupported.onnx"))
# fails the checker: a node reads a value nothing defines
m = model([helper.make_node("Relu", ["nowhere"], ["y"])], [vi("x", [1, 4])], [vi("y", [1, 4])], opset=13)
onnx.save(m, os.path.join(OUT, "bad_checker.onnx"))
# float64 input
m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", [1, 4], TensorProto.DOUBLE)],
          [vi("y", [1, 4], TensorProto.DOUBLE)], opset=13)
onnx.save(m, os.path.join(OUT, "bad_double.onnx"))
# opset 8: outside 9..17
m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", [1, 4])], [vi("y", [1, 4])], opset=8)
onnx.save(m, os.path.join(OUT, "bad_opset8.onnx"))
# dynamic spatial dims (resolved only by an input shape)
m = model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], [vi("x", ["N", 4, "H", "W"])],
          [vi("y", ["N", 8, "H", "W"])], [("w", w)], opset=13)
onnx.save(m, os.path.join(OUT, "dyn_spatial.onnx"))
# a reshape target that multiplies the batch by itself: no constant or batch-proportional shape
nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Shape", ["c"], ["sh"]), helper.make_node("Gather", ["sh", "i0"], ["n"], axis=0),
         helper.make_node("Mul", ["n", "n"], ["nn"]), helper.make_node("Unsqueeze", ["nn", "ax"], ["n1"]),
         helper.make_node("Concat", ["n1", "m1"], ["shape"], axis=0),
         helper.make_node("Reshape", ["c", "shape"], ["y"], name="reshape_nn")]
m = model(nodes, [vi("x", ["N", 4, 6, 6])], [vi("y", [None, None])],
          [("w", w), ("i0", np.array(0, np.int64)), ("ax", np.array([0], np.int64)), ("m1", np.array([-1], np.int64))],
          opset=13)
onnx.save(m, os.path.join(OUT, "bad_dyn_reshape.onnx"))
# a reshape whose target is computed from the data at run time
nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("ReduceMax", ["c"], ["mx"], keepdims=0), helper.make_node("Cast", ["mx"], ["mi"], to=7),
         helper.make_node("Unsqueeze", ["mi", "ax"], ["m1"]),
         helper.make_node("Concat", ["m1", "m2"], ["shape"], axis=0),
         helper.make_node("Reshape", ["c", "shape"], ["y"], name="reshape_data")]
m = model(nodes, [vi("x", ["N", 4, 6, 6])], [vi("y", [None, None])],
          [("w", w), ("ax", np.array([0], np.int64)), ("m2", np.array([-1], np.int64))], opset=13)
onnx.save(m, os.path.join(OUT, "bad_data_reshape.onnx"))
# a conv with dilations (not a QConv2d) and a BatchNormalization in training mode
m = model([helper.make_node("Conv", ["x", "w"], ["c"], pads=[2, 2, 2, 2], dilations=[2, 2], name="conv_dilated"),
           helper.make_node("BatchNormalization", ["c", "g", "b", "mu", "var"], ["y", "rm", "rv"], training_mode=1,
                            name="bn_train")],
          [vi("x", ["N", 4, 6, 6])], [vi("y", ["N", 8, 6, 6])],
          [("w", w), ("g", g_), ("b", b_), ("mu", mu), ("var", var)], opset=15)
onnx.save(m, os.path.join(OUT, "bad_forms.onnx"))
# a fixed batch of 1 with a constant reshape target (what a static-batch export folds to)
m = model([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
           helper.make_node("Reshape", ["c", "shape"], ["y"])],
          [vi("x", [1, 4, 6, 6])], [vi("y", [1, 288])], [("w", w), ("shape", np.array([1, 288], np.int64))], opset=13)
onnx.save(m, os.path.join(OUT, "bad_static_batch.onnx"))
print(len(cases), "opset cases and the bad files written to", OUT)
