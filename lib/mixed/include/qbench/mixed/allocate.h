#pragma once
// A model's layers as the search's problem, its allocation applied, and what a quantized model
// costs (size, BOPs, average widths) read from the quantizers it carries.
#include <map>
#include <string>
#include <vector>

#include "qbench/mixed/search.h"
#include "qbench/mixed/sensitivity.h"
#include "qbench/quant/profile.h"
#include "qbench/quant/qmodules.h"

namespace qbench::mixed {

/// The search's layers for `model` (after a forward pass recorded its MACs and sizes) under
/// `profile`: candidate widths as the sensitivities were measured, except that the profile's
/// first/last-layer policy fixes those layers at 8 bits (capped by max_bits) and a layer whose
/// input the profile leaves float has no activation choice. Layers reading one tensor share
/// its width. With a roofline block, each width pair's modeled latency at `latency_batch`.
/// Activation elements count per input quantizer (a tensor read by two layers counts twice).
std::vector<LayerChoices> layer_choices(quant::QuantModel& model, const quant::Profile& profile, const Sensitivity& s,
                                        const std::vector<int>& w_bits, const std::vector<int>& a_bits,
                                        int64_t latency_batch);

/// The allocation as the widths QuantModel::set_bit_allocation takes.
std::map<std::string, quant::LayerBits> to_layer_bits(const std::vector<LayerChoices>& layers, const Allocation& a);

/// Size, BOPs and average widths of a model with its quantizers attached, from each layer's
/// weight and input quantizer (32 where a tensor stays float) and the MACs and input sizes the
/// last forward pass recorded. Sensitivity is left 0.
Cost model_cost(quant::QuantModel& model);

}  // namespace qbench::mixed
