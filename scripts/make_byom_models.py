#!/usr/bin/python3
"""The ONNX files experiments/byom.yaml names: torchvision 0.14 classifiers (resnet18, mobilenet_v2,
shufflenet_v2_x0_5, googlenet, and regnet_x_400mf, which the matrix no longer runs: see the
README) with num_classes=10 and the first conv swapped for a one-channel conv, so that they take
Fashion-MNIST's 1x28x28 images, exported from eval mode with
training=torch.onnx.TrainingMode.PRESERVE (BatchNormalization nodes kept, so every BN folding
strategy applies) and a dynamic batch. Their weights are torchvision's random initialisation: the
matrix trains the structure (`train: true`). A model file is a fixture; qbench itself never runs
Python.

usage: scripts/make_byom_models.py [OUT_DIR]   (default experiments/models)
"""
import os
import sys

import torch
import torchvision

MODELS = {
    "resnet18": lambda: torchvision.models.resnet18(num_classes=10),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(num_classes=10),
    "shufflenet_v2_x0_5": lambda: torchvision.models.shufflenet_v2_x0_5(num_classes=10),
    "regnet_x_400mf": lambda: torchvision.models.regnet_x_400mf(num_classes=10),
    "googlenet": lambda: torchvision.models.googlenet(num_classes=10, aux_logits=False, transform_input=False,
                                                      init_weights=True),
}


def one_channel(model):
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            new = torch.nn.Conv2d(1, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                                  m.bias is not None)
            parent = model
            *path, leaf = name.split(".")
            for p in path:
                parent = getattr(parent, p)
            setattr(parent, leaf, new)
            return model
    raise RuntimeError("no conv")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "experiments", "models")
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    for name, build in MODELS.items():
        model = one_channel(build()).eval()
        path = os.path.join(out, name + ".onnx")
        torch.onnx.export(model, torch.zeros(1, 1, 28, 28), path, opset_version=13, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
        print(path)


if __name__ == "__main__":
    main()
