// The fused pieces of a reconstruction iteration (recon_fused.h): autograd functions and drivers
// over the loops of src/kernels/recon.cpp, in the pattern of the QAT kernels (lib/qat/src/kernels),
// with one difference: a chunk is always kReconGrain elements (never "one per thread"), and a sum
// is kept per chunk and added in chunk order, so results do not depend on the thread count.
#include "qbench/ptq/recon_fused.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>

#include "kernels/recon.h"
#include "qbench/common/errors.h"
#include "qbench/qat/lsq.h"

namespace qbench::ptq {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

static_assert(kReconGrain % 16 == 0, "a chunk starts on a block of QDrop's mask");

int64_t n_chunks(int64_t n) { return (n + kReconGrain - 1) / kReconGrain; }

/// f(begin, end) for every chunk, in parallel.
template <typename F>
void for_chunks(int64_t n, F&& f) {
  const int64_t chunks = n_chunks(n);
  if (chunks <= 1) {
    if (n > 0) f(int64_t{0}, n);
    return;
  }
  at::parallel_for(0, chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) f(c * kReconGrain, std::min(n, (c + 1) * kReconGrain));
  });
}

/// N sums over the chunks: f(begin, end, sums) writes one chunk's N sums (double); each total adds
/// its chunks in chunk order.
template <size_t N, typename F>
std::array<double, N> sum_chunks_n(int64_t n, F&& f) {
  const int64_t chunks = n > 0 ? n_chunks(n) : 0;
  std::vector<std::array<double, N>> part(static_cast<size_t>(chunks));
  if (chunks == 1) {
    f(int64_t{0}, n, part[0].data());
  } else if (chunks > 1) {
    at::parallel_for(0, chunks, 1, [&](int64_t cb, int64_t ce) {
      for (int64_t c = cb; c < ce; ++c)
        f(c * kReconGrain, std::min(n, (c + 1) * kReconGrain), part[static_cast<size_t>(c)].data());
    });
  }
  std::array<double, N> total{};
  for (const auto& p : part)
    for (size_t i = 0; i < N; ++i) total[i] += p[i];
  return total;
}

/// The sum of f(begin, end) (double) over the chunks, added in chunk order.
template <typename F>
double sum_chunks(int64_t n, F&& f) {
  return sum_chunks_n<1>(n, [&](int64_t b, int64_t e, double* out) { out[0] = f(b, e); })[0];
}

struct Key {
  uint32_t k0 = 0, k1 = 0, thr = 0;
  bool drop = false;
};
Key make_key(double p, uint64_t key) {
  Key k;
  k.drop = p < 1.0;
  k.k0 = static_cast<uint32_t>(key);
  k.k1 = static_cast<uint32_t>(key >> 32);
  k.thr = k.drop ? drop_threshold(p) : 0;
  return k;
}

void check_cpu_float(const at::Tensor& t, const char* who) {
  if (!t.device().is_cpu() || t.scalar_type() != at::kFloat)
    throw Error(std::string(who) + ": needs a float32 CPU tensor");
}
void check_index_range(int64_t n, const char* who) {
  if (n > static_cast<int64_t>(std::numeric_limits<uint32_t>::max()))
    throw Error(std::string(who) + ": more than 2^32 elements in one draw");
}

float scalar_of(const at::Tensor& t) { return t.contiguous().data_ptr<float>()[0]; }

// QDrop's mask kept from a forward for its backward: one keep word per block of 16 elements
// (chunks start on blocks: kReconGrain % 16 == 0), an int32 tensor in the context's saved data.
at::Tensor new_mask_words(int64_t n, const at::Tensor& like) {
  return at::empty({(n + 15) / 16}, like.options().dtype(at::kInt));
}
uint32_t* words_of(const at::Tensor& w) {
  return w.defined() ? reinterpret_cast<uint32_t*>(w.data_ptr<int32_t>()) : nullptr;
}
/// The tensor saved as `name`, or an undefined one.
at::Tensor saved_tensor(AutogradContext* ctx, const char* name) {
  const auto it = ctx->saved_data.find(name);
  return it == ctx->saved_data.end() ? at::Tensor() : it->second.toTensor();
}

// ---------------------------------------------------------------------------------------------

struct ActDropFn : public torch::autograd::Function<ActDropFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& s, int64_t qmin, int64_t qmax,
                            double g, double p, int64_t key) {
    auto xc = x.contiguous();
    ctx->save_for_backward({xc, s});
    ctx->saved_data["qmin"] = qmin;
    ctx->saved_data["qmax"] = qmax;
    ctx->saved_data["g"] = g;
    const Key k = make_key(p, static_cast<uint64_t>(key));
    const float sv = scalar_of(s), lo = static_cast<float>(qmin), hi = static_cast<float>(qmax);
    auto y = at::empty_like(xc);
    at::Tensor words;
    if (k.drop) {
      words = new_mask_words(xc.numel(), xc);
      ctx->saved_data["words"] = words;
    }
    const float* px = xc.data_ptr<float>();
    float* py = y.data_ptr<float>();
    uint32_t* pw = words_of(words);
    for_chunks(xc.numel(), [&](int64_t b, int64_t e) {
      kernels::act_drop_forward_kernel(px + b, py + b, pw ? pw + b / 16 : nullptr, e - b, static_cast<uint32_t>(b),
                                       k.k0, k.k1, k.thr, sv, lo, hi);
    });
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& xc = saved[0];
    const auto& s = saved[1];
    const float lo = static_cast<float>(ctx->saved_data["qmin"].toInt());
    const float hi = static_cast<float>(ctx->saved_data["qmax"].toInt());
    const double g = ctx->saved_data["g"].toDouble();
    const uint32_t* pw = words_of(saved_tensor(ctx, "words"));
    const float sv = scalar_of(s);
    auto dy = grads[0].contiguous();
    at::Tensor dx;
    if (ctx->needs_input_grad(0)) dx = at::empty_like(xc);
    const float* px = xc.data_ptr<float>();
    const float* pg = dy.data_ptr<float>();
    float* pdx = dx.defined() ? dx.data_ptr<float>() : nullptr;
    const double ds = sum_chunks(xc.numel(), [&](int64_t b, int64_t e) {
      return kernels::act_drop_backward_kernel(px + b, pg + b, pdx ? pdx + b : nullptr, pw ? pw + b / 16 : nullptr,
                                               e - b, sv, lo, hi);
    });
    return {dx, at::full(s.sizes(), ds * g, s.options()), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

// ---------------------------------------------------------------------------------------------

/// One operand quantizer's grid (step, clip range) and, with a key, its mask's key.
kernels::ActKey act_key(const at::Tensor& s, int64_t qmin, int64_t qmax, const Key& mask = Key{}) {
  kernels::ActKey a;
  a.s = scalar_of(s);
  a.lo = static_cast<float>(qmin);
  a.hi = static_cast<float>(qmax);
  a.k0 = mask.k0;
  a.k1 = mask.k1;
  a.thr = mask.thr;
  return a;
}

struct QuantAddFn : public torch::autograd::Function<QuantAddFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b, const at::Tensor& sa,
                            const at::Tensor& sb, int64_t qmin_a, int64_t qmax_a, double g_a, int64_t qmin_b,
                            int64_t qmax_b, double g_b, double p, int64_t key_a, int64_t key_b, bool relu) {
    auto ac = a.contiguous(), bc = b.contiguous();
    const Key mask_a = make_key(p, static_cast<uint64_t>(key_a)), mask_b = make_key(p, static_cast<uint64_t>(key_b));
    const auto ka = act_key(sa, qmin_a, qmax_a, mask_a), kb = act_key(sb, qmin_b, qmax_b, mask_b);
    const int64_t n = ac.numel();
    auto out = at::empty_like(ac);
    at::Tensor wa, wb;
    if (mask_a.drop) {
      wa = new_mask_words(n, ac);
      wb = new_mask_words(n, ac);
      ctx->saved_data["words_a"] = wa;
      ctx->saved_data["words_b"] = wb;
    }
    const float *pa = ac.data_ptr<float>(), *pb = bc.data_ptr<float>();
    float* po = out.data_ptr<float>();
    uint32_t *pwa = words_of(wa), *pwb = words_of(wb);
    for_chunks(n, [&](int64_t c0, int64_t c1) {
      kernels::quant_add_forward_kernel(pa + c0, pb + c0, po + c0, pwa ? pwa + c0 / 16 : nullptr,
                                        pwb ? pwb + c0 / 16 : nullptr, c1 - c0, static_cast<uint32_t>(c0), ka, kb,
                                        relu);
    });
    ctx->save_for_backward({ac, bc, sa, sb, out});
    ctx->saved_data["qmin_a"] = qmin_a;
    ctx->saved_data["qmax_a"] = qmax_a;
    ctx->saved_data["qmin_b"] = qmin_b;
    ctx->saved_data["qmax_b"] = qmax_b;
    ctx->saved_data["g_a"] = g_a;
    ctx->saved_data["g_b"] = g_b;
    ctx->saved_data["relu"] = relu;
    return out;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &ac = saved[0], &bc = saved[1], &sa = saved[2], &sb = saved[3], &out = saved[4];
    auto& d = ctx->saved_data;
    const auto ka = act_key(sa, d["qmin_a"].toInt(), d["qmax_a"].toInt());
    const auto kb = act_key(sb, d["qmin_b"].toInt(), d["qmax_b"].toInt());
    const bool relu = d["relu"].toBool();
    const uint32_t *pwa = words_of(saved_tensor(ctx, "words_a")), *pwb = words_of(saved_tensor(ctx, "words_b"));
    auto dy = grads[0].contiguous();
    at::Tensor da, db;
    if (ctx->needs_input_grad(0)) da = at::empty_like(ac);
    if (ctx->needs_input_grad(1)) db = at::empty_like(bc);
    const float *pa = ac.data_ptr<float>(), *pb = bc.data_ptr<float>(), *po = out.data_ptr<float>(),
                *pg = dy.data_ptr<float>();
    float* pda = da.defined() ? da.data_ptr<float>() : nullptr;
    float* pdb = db.defined() ? db.data_ptr<float>() : nullptr;
    const auto sums = sum_chunks_n<2>(ac.numel(), [&](int64_t c0, int64_t c1, double* chunk_sums) {
      kernels::quant_add_backward_kernel(pa + c0, pb + c0, po + c0, pg + c0, pda ? pda + c0 : nullptr,
                                         pdb ? pdb + c0 : nullptr, pwa ? pwa + c0 / 16 : nullptr,
                                         pwb ? pwb + c0 / 16 : nullptr, c1 - c0, ka, kb, relu, chunk_sums);
    });
    return {da,
            db,
            at::full(sa.sizes(), sums[0] * d["g_a"].toDouble(), sa.options()),
            at::full(sb.sizes(), sums[1] * d["g_b"].toDouble(), sb.options()),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// ---------------------------------------------------------------------------------------------

/// Calls f(begin, end, row) for the pieces of [b, e) that lie in one row of length row_len.
template <typename F>
void by_rows(int64_t b, int64_t e, int64_t row_len, F&& f) {
  while (b < e) {
    const int64_t row = b / row_len;
    const int64_t end = std::min(e, (row + 1) * row_len);
    f(b, end, row);
    b = end;
  }
}

struct AdaRoundFn : public torch::autograd::Function<AdaRoundFn> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& v, const at::Tensor& w, const at::Tensor& scale,
                               const at::Tensor& zero_point, int64_t qmin, int64_t qmax, double beta) {
    auto wc = w.contiguous();
    auto sig = at::sigmoid(v).contiguous();  // ATen's sigmoid: the same values as the composed form
    auto sc = scale.contiguous(), zc = zero_point.contiguous();
    const int64_t n = wc.numel(), rows = sc.numel();
    const int64_t row_len = rows == 1 ? n : n / rows;
    const bool reg = beta > 0;
    auto out = at::empty_like(wc);
    const float *pw = wc.data_ptr<float>(), *ps = sig.data_ptr<float>(), *psc = sc.data_ptr<float>(),
                *pz = zc.data_ptr<float>();
    float* po = out.data_ptr<float>();
    const float lo = static_cast<float>(qmin), hi = static_cast<float>(qmax), bf = static_cast<float>(beta);
    const double reg_sum = sum_chunks(n, [&](int64_t b, int64_t e) {
      double acc = 0.0;
      by_rows(b, e, row_len, [&](int64_t rb, int64_t re, int64_t row) {
        acc += kernels::adaround_forward_kernel(pw + rb, ps + rb, po + rb, re - rb, psc[row], pz[row], lo, hi, reg, bf);
      });
      return acc;
    });
    ctx->save_for_backward({wc, sig, sc, zc});
    ctx->saved_data["qmin"] = qmin;
    ctx->saved_data["qmax"] = qmax;
    ctx->saved_data["beta"] = beta;
    auto r = at::scalar_tensor(reg ? reg_sum : 0.0, v.options());
    return {out, r};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &wc = saved[0], &sig = saved[1], &sc = saved[2], &zc = saved[3];
    const float lo = static_cast<float>(ctx->saved_data["qmin"].toInt());
    const float hi = static_cast<float>(ctx->saved_data["qmax"].toInt());
    const double beta = ctx->saved_data["beta"].toDouble();
    const int64_t n = wc.numel(), rows = sc.numel();
    const int64_t row_len = rows == 1 ? n : n / rows;
    auto dy = grads[0].contiguous();
    const float greg = (beta > 0 && grads[1].defined()) ? grads[1].item<float>() : 0.0f;
    auto dv = at::empty_like(sig);
    const float *pw = wc.data_ptr<float>(), *ps = sig.data_ptr<float>(), *psc = sc.data_ptr<float>(),
                *pz = zc.data_ptr<float>(), *pg = dy.data_ptr<float>();
    float* pdv = dv.data_ptr<float>();
    const float bf = static_cast<float>(beta), bm1 = static_cast<float>(beta - 1.0);
    for_chunks(n, [&](int64_t b, int64_t e) {
      by_rows(b, e, row_len, [&](int64_t rb, int64_t re, int64_t row) {
        kernels::adaround_backward_kernel(pw + rb, ps + rb, pg + rb, pdv + rb, re - rb, psc[row], pz[row], lo, hi,
                                          greg, bf, bm1);
      });
    });
    return {dv, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// ---------------------------------------------------------------------------------------------

struct RecLossFn : public torch::autograd::Function<RecLossFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& out, const at::Tensor& target) {
    auto oc = out.contiguous(), tc = target.contiguous();
    const int64_t m = oc.numel() / std::max<int64_t>(1, oc.size(1));
    const float *pa = oc.data_ptr<float>(), *pb = tc.data_ptr<float>();
    double sum = 0.0;
    if (out.requires_grad()) {
      // The gradient for an incoming gradient of 1 (the loss's own: rec + lambda reg), written in
      // the same pass: the backward then has nothing to read. inv as the backward computes it.
      auto da = at::empty_like(oc);
      float* pd = da.data_ptr<float>();
      const float inv = 1.0f / static_cast<float>(m);
      sum = sum_chunks(oc.numel(), [&](int64_t b, int64_t e) {
        return kernels::sq_err_with_grad_kernel(pa + b, pb + b, pd + b, e - b, inv);
      });
      ctx->saved_data["da1"] = da;
    } else {
      sum = sum_chunks(oc.numel(), [&](int64_t b, int64_t e) { return kernels::sq_err_kernel(pa + b, pb + b, e - b); });
    }
    ctx->save_for_backward({oc, tc});
    return at::scalar_tensor(sum / static_cast<double>(m), out.options());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &oc = saved[0], &tc = saved[1];
    const int64_t m = oc.numel() / std::max<int64_t>(1, oc.size(1));
    // The composed form's mean backward: grad / M in float, then pow's backward grad * (2 d).
    const float g = grads[0].item<float>();
    const at::Tensor da1 = saved_tensor(ctx, "da1");
    if (g == 1.0f && da1.defined()) return {da1, at::Tensor()};
    const float inv = g / static_cast<float>(m);
    auto da = at::empty_like(oc);
    const float *pa = oc.data_ptr<float>(), *pb = tc.data_ptr<float>();
    float* pd = da.data_ptr<float>();
    for_chunks(oc.numel(), [&](int64_t b, int64_t e) { kernels::sq_err_backward_kernel(pa + b, pb + b, pd + b, e - b, inv); });
    return {da, at::Tensor()};
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------

float regularizer_pow(float a, float e) { return kernels::pow01(a, e); }
float regularizer_pow_positive(float a, float e) { return kernels::pow01_pos(a, e); }

uint64_t next_drop_key(at::Generator& gen) {
  auto* g = at::check_generator<at::CPUGeneratorImpl>(gen);
  std::lock_guard<std::mutex> lock(gen.mutex());
  return g->random64();
}

uint32_t drop_threshold(double p) {
  if (!(p > 0.0)) return 0;
  return static_cast<uint32_t>(std::nearbyint(std::min(p, 1.0) * 65536.0));
}

at::Tensor drop_mask(uint64_t key, int64_t numel, double p) {
  check_index_range(numel, "drop_mask");
  auto m = at::empty({numel}, at::TensorOptions().dtype(at::kBool));
  if (p >= 1.0) return m.fill_(true);
  const Key k = make_key(p, key);
  auto* pm = reinterpret_cast<uint8_t*>(m.data_ptr<bool>());
  for_chunks(numel, [&](int64_t b, int64_t e) {
    kernels::drop_mask_kernel(pm + b, e - b, static_cast<uint32_t>(b), k.k0, k.k1, k.thr);
  });
  return m;
}

at::Tensor act_quant_drop(const at::Tensor& x, const at::Tensor& s, int64_t qmin, int64_t qmax, double g, double p,
                          uint64_t key) {
  check_cpu_float(x, "act_quant_drop");
  check_cpu_float(s, "act_quant_drop");
  if (s.numel() != 1) throw Error("act_quant_drop: the step is per tensor (one element)");
  check_index_range(x.numel(), "act_quant_drop");
  return ActDropFn::apply(x, s, qmin, qmax, g, p, static_cast<int64_t>(key));
}

at::Tensor quant_add_fused(const at::Tensor& a, const at::Tensor& b, const ActQuantArgs& qa, const ActQuantArgs& qb,
                           bool relu) {
  check_cpu_float(a, "quant_add_fused");
  check_cpu_float(b, "quant_add_fused");
  check_cpu_float(qa.s, "quant_add_fused");
  check_cpu_float(qb.s, "quant_add_fused");
  if (!a.sizes().equals(b.sizes())) throw Error("quant_add_fused: the operands differ in shape");
  if (qa.s.numel() != 1 || qb.s.numel() != 1) throw Error("quant_add_fused: the steps are per tensor (one element)");
  if ((qa.p < 1.0) != (qb.p < 1.0) || (qa.p < 1.0 && drop_threshold(qa.p) != drop_threshold(qb.p)))
    throw Error("quant_add_fused: the two quantizers drop with different p");
  check_index_range(a.numel(), "quant_add_fused");
  return QuantAddFn::apply(a, b, qa.s, qb.s, qa.qmin, qa.qmax, qa.g, qb.qmin, qb.qmax, qb.g, qa.p,
                           static_cast<int64_t>(qa.key), static_cast<int64_t>(qb.key), relu);
}

at::Tensor act_quant_drop_composed(const at::Tensor& x, const at::Tensor& s, int64_t qmin, int64_t qmax, double g,
                                   double p, uint64_t key) {
  auto q = qat::lsq_fake_quantize(x, s, qmin, qmax, g);
  if (p >= 1.0) return q;
  auto m = drop_mask(key, x.numel(), p).view(x.sizes());
  if (!x.device().is_cpu()) m = m.to(x.device());
  return at::where(m, q, x);
}

std::pair<at::Tensor, at::Tensor> adaround_weight_fused(const at::Tensor& v, const at::Tensor& w,
                                                        const at::Tensor& scale, const at::Tensor& zero_point,
                                                        int64_t qmin, int64_t qmax, double beta) {
  check_cpu_float(v, "adaround_weight_fused");
  check_cpu_float(w, "adaround_weight_fused");
  if (!v.sizes().equals(w.sizes())) throw Error("adaround_weight_fused: V and the weight differ in shape");
  auto s = scale.to(at::kFloat).reshape({-1});
  auto z = zero_point.to(at::kFloat).reshape({-1});
  if (s.numel() != z.numel()) throw Error("adaround_weight_fused: scale and zero point differ in size");
  if (s.numel() != 1 && (w.dim() == 0 || w.size(0) != s.numel()))
    throw Error("adaround_weight_fused: a per-channel scale must run along dimension 0");
  auto outs = AdaRoundFn::apply(v, w.detach(), s, z, qmin, qmax, beta);
  return {outs[0], outs[1]};
}

at::Tensor rec_loss_fused(const at::Tensor& out, const at::Tensor& target) {
  check_cpu_float(out, "rec_loss_fused");
  check_cpu_float(target, "rec_loss_fused");
  if (!out.sizes().equals(target.sizes()) || out.dim() < 2) throw Error("rec_loss_fused: shapes differ");
  return RecLossFn::apply(out, target.detach());
}

at::Tensor rec_loss_composed(const at::Tensor& out, const at::Tensor& target) {
  return (out - target).pow(2).sum(1).mean();
}

void gather_rows(const at::Tensor& a, const at::Tensor* b, const at::Tensor& idx, double p, uint64_t key,
                 at::Tensor& out) {
  check_cpu_float(a, "gather_rows");
  check_cpu_float(out, "gather_rows");
  if (!a.is_contiguous() || !out.is_contiguous()) throw Error("gather_rows: needs contiguous tensors");
  const int64_t rows = idx.size(0), row_len = a.numel() / std::max<int64_t>(1, a.size(0));
  if (out.numel() != rows * row_len) throw Error("gather_rows: the output has the wrong size");
  check_index_range(out.numel(), "gather_rows");
  auto ic = idx.to(at::kLong).contiguous();
  const int64_t* pi = ic.data_ptr<int64_t>();
  for (int64_t r = 0; r < rows; ++r)
    if (pi[r] < 0 || pi[r] >= a.size(0)) throw Error("gather_rows: row index out of range");
  const bool mix = b != nullptr && p < 1.0;
  if (mix) {
    check_cpu_float(*b, "gather_rows");
    if (!b->is_contiguous() || !b->sizes().equals(a.sizes())) throw Error("gather_rows: the two sources differ");
  }
  const Key k = make_key(mix ? p : 1.0, key);
  const float* pa = a.data_ptr<float>();
  const float* pb = mix ? b->data_ptr<float>() : nullptr;
  float* po = out.data_ptr<float>();
  for_chunks(out.numel(), [&](int64_t cb, int64_t ce) {
    by_rows(cb, ce, row_len, [&](int64_t sb, int64_t se, int64_t r) {
      const int64_t src = pi[r] * row_len + (sb - r * row_len);
      if (mix)
        kernels::drop_select_kernel(pa + src, pb + src, po + sb, se - sb, static_cast<uint32_t>(sb), k.k0, k.k1, k.thr);
      else
        std::memcpy(po + sb, pa + src, static_cast<size_t>(se - sb) * sizeof(float));
    });
  });
}

// ---------------------------------------------------------------------------------------------

size_t FusedAdam::add_group(std::vector<at::Tensor> params, double lr) {
  Group g;
  g.lr = lr;
  for (auto& p : params) {
    check_cpu_float(p, "FusedAdam");
    if (!p.is_contiguous()) throw Error("FusedAdam: parameters must be contiguous");
    g.params.push_back({p, at::zeros_like(p), at::zeros_like(p), 0});
  }
  groups_.push_back(std::move(g));
  return groups_.size() - 1;
}

void FusedAdam::step() {
  constexpr double b1 = 0.9, b2 = 0.999, eps = 1e-8;  // torch::optim::AdamOptions' defaults
  for (auto& g : groups_) {
    for (auto& prm : g.params) {
      at::Tensor& grad = prm.p.mutable_grad();
      if (!grad.defined()) continue;
      // torch::optim::Adam: a step count per tensor, bias corrections in double, step_size = lr /
      // bc1, denom = sqrt(v) / sqrt(bc2) + eps, each scalar rounded to float where it meets a tensor.
      ++prm.step;
      const double bc1 = 1.0 - std::pow(b1, static_cast<double>(prm.step));
      const double bc2 = 1.0 - std::pow(b2, static_cast<double>(prm.step));
      const float step_size = static_cast<float>(g.lr / bc1), bc2_sqrt = static_cast<float>(std::sqrt(bc2));
      auto gc = grad.contiguous();
      float* pp = prm.p.data_ptr<float>();
      const float* pg = gc.data_ptr<float>();
      float* pm = prm.m.data_ptr<float>();
      float* pv = prm.v.data_ptr<float>();
      for_chunks(prm.p.numel(), [&](int64_t b, int64_t e) {
        kernels::adam_kernel(pp + b, pg + b, pm + b, pv + b, e - b, static_cast<float>(b1), static_cast<float>(1.0 - b1),
                             static_cast<float>(b2), static_cast<float>(1.0 - b2), bc2_sqrt, static_cast<float>(eps),
                             step_size);
      });
      grad.reset();
    }
  }
  ++step_;
}

}  // namespace qbench::ptq
