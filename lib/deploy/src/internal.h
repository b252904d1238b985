#pragma once
// Shared by lower.cpp and compare.cpp: the lowered nodes and the hook plumbing.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "qbench/deploy/deploy.h"

namespace qbench::deploy::detail {

/// Per-tensor activation qparams as a quint8 tensor holds them: values (q - zp) * scale with q in
/// [0, qmax]. A quantizer's signed or narrower range [qmin, qmax] maps here by shifting: zp - qmin.
struct ActQ {
  double scale = 0;
  int64_t zp = 0;
  int64_t qmax = 255;
  bool valid() const { return scale > 0; }
  bool same(const ActQ& o) const { return scale == o.scale && zp == o.zp && qmax == o.qmax; }
  double lo() const { return static_cast<double>(-zp) * scale; }
  double hi() const { return static_cast<double>(qmax - zp) * scale; }
};

/// Quantizes x (float, or quantized with other qparams: dequantized first) onto q's grid.
at::Tensor to_q(const at::Tensor& x, const ActQ& q);

/// One conv/linear layer or residual add of the model.
struct Node {
  enum class Kind { Conv, LinearQ, LinearI32, Add };
  std::string name;
  Kind kind = Kind::Conv;
  quant::QuantLayer* layer = nullptr;  // conv or linear
  quant::QConv2dImpl* conv = nullptr;
  quant::QLinearImpl* linear = nullptr;
  quant::QAddImpl* add = nullptr;
  quant::Act act = quant::Act::None;

  // Plan, filled by lower().
  ActQ in_a, in_b, out;        // inputs (b: add's second operand) and output
  bool out_float = false;      // hand a dequantized float tensor to the model code
  bool clamp = false;          // clamp the quantized output to [clamp_lo, clamp_hi] (ReLU6, < 8 bits)
  double clamp_lo = 0, clamp_hi = 0;
  c10::IValue packed;          // prepacked weight (conv, quantized linear)
  std::optional<c10::OperatorHandle> op;
  at::Tensor w_t, w_scale, bias;  // LinearI32: (q_w - z_w)^T as double [in, out], per-output scale, bias (double)
  NodeInfo info;

  /// The fake-quant computation, exactly as the model's own forward does it (float in, float out).
  at::Tensor sim(const std::vector<at::Tensor>& in) const;
  /// The integer computation (the deploy hook's body). Rethrows engine errors as qbench::Error
  /// naming the node.
  at::Tensor run(const std::vector<at::Tensor>& in) const;
  size_t arity() const { return kind == Kind::Add ? 2 : 1; }
};

using NodeFn = std::function<at::Tensor(size_t, const std::vector<at::Tensor>&)>;
/// Installs `fn(node index, inputs)` as every node's deploy hook.
void set_hooks(const std::vector<std::shared_ptr<Node>>& nodes, NodeFn fn);
void clear_hooks(const std::vector<std::shared_ptr<Node>>& nodes);

class EngineGuard {
 public:
  explicit EngineGuard(at::QEngine e);
  ~EngineGuard();

 private:
  at::QEngine prev_;
};

}  // namespace qbench::deploy::detail

namespace qbench::deploy {
struct Lowered::Impl {
  quant::QuantModel* model = nullptr;
  std::string engine_name;
  at::QEngine engine = at::QEngine::NoQEngine;
  std::vector<std::shared_ptr<detail::Node>> nodes;  // execution order
  std::vector<NodeInfo> infos;
  bool installed = false;
  void install();
  void restore();
};
}  // namespace qbench::deploy
