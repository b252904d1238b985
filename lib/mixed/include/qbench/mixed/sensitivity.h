#pragma once
// Per-layer sensitivity to each candidate width (issue 19), measured on the FP32 model over
// calibration images with their labels (mean cross-entropy L):
//   hessian  weights: HAWQ-V2's Omega = Tr(H)/n * ||Q_b(W) - W||^2, the trace by Hutchinson's
//            estimator with Rademacher probes (stopping once every layer's standard error is
//            below `tolerance` of its trace, at most `probes`); activations: the diagonal
//            Fisher E[(Q_a(x) - x)^2 (dl/dx)^2] of the layer's input (the Hessian of an
//            activation is not a parameter's: no trace to take).
//   fisher   weights: BRECQ's diagonal Fisher of the layer's output, E[dz^2 (dl/dz)^2], with dz
//            the output change Q_b(W) causes (after the BatchNorm partner); activations as above.
//   loss     the increase of L with that one weight (or input) quantized alone, every other
//            tensor float: the naive baseline.
// The first two approximate 2 * (increase of L) and the last measures it, so weights and
// activations are on one scale within a measure. Q_b is the profile's quantizer at b bits with
// its default observer. Deterministic for a seed at any thread count up to float summation order.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "qbench/quant/profile.h"
#include "qbench/quant/qmodules.h"

namespace qbench::mixed {

struct SensitivityOptions {
  std::string measure = "hessian";  ///< hessian | fisher | loss
  std::vector<int> w_bits{2, 3, 4, 8}, a_bits{4, 8};
  int probes = 64;
  double tolerance = 0.05;
  uint64_t seed = 0;
  int64_t batch_size = 128;  ///< images per forward pass (memory)
};

struct LayerSensitivity {
  std::string name;
  std::vector<double> w_sens;  ///< per SensitivityOptions::w_bits
  std::vector<double> a_sens;  ///< per SensitivityOptions::a_bits
  double trace = 0;            ///< hessian: the estimated Tr(H) of the layer's weight
  double trace_stderr = 0;
  int64_t params = 0, act_elems = 0, macs = 0;  ///< weight elements, input elements and MACs per sample
  int a_group = -1;  ///< layers that read the same tensor share a group (their input width is one)
};

struct Sensitivity {
  std::vector<LayerSensitivity> layers;  ///< QuantModel::quant_layers() order
  int probes_used = 0;
  double seconds = 0;
};

/// Measures every conv/linear layer of `model` (FP32, no quantizers attached; left unchanged).
Sensitivity measure_sensitivity(quant::QuantModel& model, const quant::Profile& profile, const at::Tensor& images,
                                const at::Tensor& labels, const SensitivityOptions& opt);

/// The layers' sizes, MACs and shared inputs from one forward pass of `sample` (no gradients),
/// every sensitivity 0 (one per candidate): what budget checks need before any work.
Sensitivity layer_structure(quant::QuantModel& model, const at::Tensor& sample, std::size_t w_count,
                            std::size_t a_count);

/// Hutchinson's estimate of the trace of d2L/dW2 for each of `params` (L = the sum over
/// c < chunks of loss(c), each built with a graph), and the exact trace (every diagonal entry by a
/// Hessian-vector product with a unit vector: for tests on tiny networks).
struct TraceEstimate {
  std::vector<double> trace, stderr_;
  int probes = 0;
};
TraceEstimate hutchinson_trace(const std::function<at::Tensor(int)>& loss, int chunks,
                               const std::vector<at::Tensor>& params, int probes, double tolerance, uint64_t seed);
std::vector<double> exact_trace(const std::function<at::Tensor(int)>& loss, int chunks,
                                const std::vector<at::Tensor>& params);

}  // namespace qbench::mixed
