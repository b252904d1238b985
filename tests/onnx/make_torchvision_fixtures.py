#!/usr/bin/python3
"""Exports torchvision 0.14 classifiers to ONNX (opset 13) for tests/onnx/test_torchvision.cpp.

Each model is built with num_classes=10, its first conv swapped for a 1-input-channel conv
(Fashion-MNIST), random weights from a fixed seed and randomised BatchNorm statistics and affine
parameters (so that folding a BN is not a no-op), then exported twice from eval mode:
  <name>.folded.onnx     the default export (PyTorch folds every BN into its conv)
  <name>.bn.onnx         training=TrainingMode.PRESERVE (BatchNormalization nodes kept)
with a dynamic batch dimension. Beside them: <name>.input.npy (the fixed batch, N x 1 x H x W) and
<name>.logits.npy (PyTorch's FP32 logits on it). Used at test time only (never at run time).

usage: make_torchvision_fixtures.py OUT_DIR [model ...]
"""
import os
import sys

import numpy as np
import torch
import torchvision

# The first conv swapped for a one-channel conv, as for the BYOM models of experiments/byom.yaml.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from make_byom_models import one_channel  # noqa: E402

# name -> (builder, input H=W). 32x32 works for every net here (total stride 32 ends at 1x1).
MODELS = {
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=10), 32),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(num_classes=10), 32),
    "mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(num_classes=10), 32),
    "shufflenet_v2_x0_5": (lambda: torchvision.models.shufflenet_v2_x0_5(num_classes=10), 32),
    "squeezenet1_1": (lambda: torchvision.models.squeezenet1_1(num_classes=10), 32),
    "efficientnet_b0": (lambda: torchvision.models.efficientnet_b0(num_classes=10), 32),
    "regnet_x_400mf": (lambda: torchvision.models.regnet_x_400mf(num_classes=10), 32),
    "googlenet": (lambda: torchvision.models.googlenet(num_classes=10, aux_logits=False, transform_input=False,
                                                        init_weights=True), 32),
}
BATCH = 4


def randomise_bn(model, gen):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)


def export(model, x, path, preserve):
    kwargs = dict(opset_version=13, input_names=["input"], output_names=["logits"],
                  dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    if preserve:
        kwargs["training"] = torch.onnx.TrainingMode.PRESERVE
        kwargs["do_constant_folding"] = False
    torch.onnx.export(model, x, path, **kwargs)


def main():
    out = sys.argv[1]
    names = sys.argv[2:] or list(MODELS)
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(2)
    for name in names:
        builder, hw = MODELS[name]
        torch.manual_seed(0)
        model = builder()
        one_channel(model)
        randomise_bn(model, torch.Generator().manual_seed(1))
        model.eval()
        x = torch.randn(BATCH, 1, hw, hw, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            logits = model(x)
        export(model, x, os.path.join(out, name + ".folded.onnx"), False)
        export(model, x, os.path.join(out, name + ".bn.onnx"), True)
        np.save(os.path.join(out, name + ".input.npy"), x.numpy().astype(np.float32))
        np.save(os.path.join(out, name + ".logits.npy"), logits.numpy().astype(np.float32))
        print(name, "ok", flush=True)


if __name__ == "__main__":
    main()
