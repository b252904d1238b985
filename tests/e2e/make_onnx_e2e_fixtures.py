#!/usr/bin/python3
"""ONNX files for tests/e2e/run_e2e_onnx.sh (test time only, never at run time).

A small residual CNN trained by PyTorch for two epochs on 16,384 Fashion-MNIST training images
(normalised as qbench normalises them: /255, mean 0.2860, std 0.3530), exported from eval mode in
both forms PyTorch has:
  tiny.bn.onnx       training=TrainingMode.PRESERVE (BatchNormalization nodes kept)
  tiny.folded.onnx   the default export (every BN folded into its conv)
and torch's top-1 on the whole test split in tiny.top1.txt (what qbench's FP32 row must show).
Plus files qbench must refuse: an unsupported operator (Erf), a five-class head, a static
3x32x32 input, a trailing Softmax, and a truncated copy.

usage: make_onnx_e2e_fixtures.py DATA_DIR OUT_DIR
"""
import gzip
import os
import sys

import numpy as np
import torch
import torch.nn as nn


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(root, prefix):
    x = idx(os.path.join(root, prefix + "-images-idx3-ubyte.gz")).astype(np.float32) / 255.0
    y = idx(os.path.join(root, prefix + "-labels-idx1-ubyte.gz")).astype(np.int64)
    x = (x - np.float32(0.2860)) / np.float32(0.3530)
    return torch.from_numpy(x[:, None].copy()), torch.from_numpy(y.copy())


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + x)


class Tiny(nn.Module):
    def __init__(self, in_ch=1, classes=10, extra=None):
        super().__init__()
        self.stem = nn.Conv2d(in_ch, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.block = Block(16)
        self.down = nn.Conv2d(16, 32, 3, 2, 1, bias=False)
        self.bn_down = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, classes)
        self.extra = extra

    def forward(self, x):
        x = self.block(torch.relu(self.bn(self.stem(x))))
        x = torch.relu(self.bn_down(self.down(x)))
        if self.extra == "erf":
            x = torch.erf(x)
        x = self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
        return torch.softmax(x, 1) if self.extra == "softmax" else x


def export(model, path, shape, preserve, dynamic=True):
    model.eval()
    kw = {"training": torch.onnx.TrainingMode.PRESERVE} if preserve else {}
    axes = {"input": {0: "N"}, "logits": {0: "N"}} if dynamic else None
    torch.onnx.export(model, torch.zeros(shape), path, opset_version=13, input_names=["input"],
                      output_names=["logits"], dynamic_axes=axes, **kw)


def main():
    data, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    xtr, ytr = load(data, "train")
    xte, yte = load(data, "t10k")
    model = Tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for epoch in range(2):
        for i in range(0, 16384, 64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xtr[i:i + 64]), ytr[i:i + 64]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(xte[i:i + 500]).argmax(1) for i in range(0, len(xte), 500)])
    with open(os.path.join(out, "tiny.top1.txt"), "w") as f:
        f.write("%.4f\n" % (100.0 * (pred == yte).float().mean().item()))
    export(model, os.path.join(out, "tiny.bn.onnx"), (1, 1, 28, 28), preserve=True)
    export(model, os.path.join(out, "tiny.folded.onnx"), (1, 1, 28, 28), preserve=False)
    export(Tiny(extra="erf").eval(), os.path.join(out, "unsupported.onnx"), (1, 1, 28, 28), preserve=False)
    export(Tiny(classes=5).eval(), os.path.join(out, "five_classes.onnx"), (1, 1, 28, 28), preserve=False)
    export(Tiny(in_ch=3).eval(), os.path.join(out, "rgb32.onnx"), (1, 3, 32, 32), preserve=False, dynamic=False)
    export(Tiny(extra="softmax").eval(), os.path.join(out, "softmax.onnx"), (1, 1, 28, 28), preserve=False)
    with open(os.path.join(out, "tiny.bn.onnx"), "rb") as f:
        b = f.read()
    with open(os.path.join(out, "truncated.onnx"), "wb") as f:
        f.write(b[: len(b) // 2])


if __name__ == "__main__":
    main()
