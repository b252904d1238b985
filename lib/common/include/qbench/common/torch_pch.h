#pragma once
// Precompiled header for torch-heavy targets: the narrow nn headers a model or training file
// needs (never <torch/torch.h>, which costs ~15 s and 1 GB per translation unit).
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/functional/conv.h>
#include <torch/nn/functional/linear.h>
#include <torch/optim/sgd.h>
#include <torch/serialize.h>
