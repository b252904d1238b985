#!/usr/bin/python3
"""A tiny ONNX classifier whose logits are divided by zero (tests/e2e/cluster_tiny.yaml's `divnet`).

It imports and trains like any graph (Flatten, Gemm, then Div by a constant 0), but its first
training loss is NaN, so its FP32 baseline fails deterministically, independent of the machine's
floating-point details. Test time only (python3-onnx).

usage: make_divzero_onnx.py OUT.onnx
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

weight = numpy_helper.from_array(np.full((10, 784), 0.01, np.float32), "fc.weight")
bias = numpy_helper.from_array(np.zeros((10,), np.float32), "fc.bias")
zero = numpy_helper.from_array(np.zeros((1,), np.float32), "zero")
nodes = [
    helper.make_node("Flatten", ["x"], ["flat"], axis=1, name="flatten"),
    helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["fc_out"], transB=1, name="fc"),
    helper.make_node("Div", ["fc_out", "zero"], ["logits"], name="div_by_zero"),
]
graph = helper.make_graph(
    nodes, "divzero", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], [weight, bias, zero])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
onnx.checker.check_model(model)
onnx.save(model, sys.argv[1])
