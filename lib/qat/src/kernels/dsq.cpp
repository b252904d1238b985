// Loops of the fused per-tensor DSQ quantizer (see dsq.h).
#include "dsq.h"

#include <cmath>
#include <cstring>

#include "common.h"

namespace qbench::qat::kernels {

namespace {

// exp(y) for y in [0, 20] without libm (Cephes' expf: Cody-Waite reduction by ln 2, degree-7
// polynomial, 2^k put in by the exponent bits), so that the loops vectorise. k <= 29.
inline float exp_small(float y) {
  const float k = round_even(y * 1.44269504088896341f);
  const float r = (y - k * 0.693359375f) - k * -2.12194440e-4f;  // k * 0.693359375 is exact
  const float p =
      (((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r + 4.1665795894e-2f) * r +
        1.6666665459e-1f) * r + 5.0000001201e-1f) * (r * r) + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// tanh(z) as Cephes' tanhf, both branches computed and one selected so that it vectorises: an odd
// polynomial below |z| = 0.625, 1 - 2 / (exp(2|z|) + 1) with z's sign above (|z| capped at 10,
// where tanh is 1 in float). Within a few ulp of std::tanh (ATen's at::tanh is Sleef's or libm's,
// not bit-identical either way); tanh(z) = z exactly for tiny z, as both, which is what decides
// the forward's rounding at a cell centre.
constexpr float kSmallZ = 0.625f;
inline float tanh_small(float z) {
  const float z2 = z * z;
  return ((((-5.70498872745e-3f * z2 + 2.06390887954e-2f) * z2 - 5.37397155531e-2f) * z2 + 1.33314422036e-1f) * z2 -
       3.33332819422e-1f) * z2 * z + z;
}
inline float tanh_approx(float z) {
  const float small = tanh_small(z);
  const float a = std::fabs(z);
  const float e = exp_small(std::min(20.f, 2.f * a));  // this argument order maps NaN to 20
  const float big = std::copysign(1.f - 2.f / (e + 1.f), z);
  return a < kSmallZ ? small : big;
}

// floor(clamp(t, 0, last)), which equals the composed form's clamp(floor(t), 0, last) for every t;
// clamped first so that round_even's range holds (last < 2^16). NaN stays NaN.
inline float cell_index(float t, float last) {
  const float tc = std::min(std::max(t, 0.f), last);
  const float r = round_even(tc);
  return r > tc ? r - 1.f : r;
}

}  // namespace

// The forward needs tanh only where it can decide the rounding. In a cell, soft - i runs from 0 to
// 1 as z goes from -kd/2 to kd/2 (s * tanh(kd/2) = 1), so round(soft) is i for z < 0 and i + 1
// for z > 0; only near the centre, where soft - i is close to 1/2, does the float value of tanh
// matter (a tie rounds half to even). Below kSmallZ this evaluates soft exactly as the backward
// and tanh_approx do; above it |tanh(z)| >= 0.55, soft - i is at least 0.775 or at most 0.225,
// and the sign of z gives the same result without the exponential.
QBENCH_CLONES
void dsq_forward_kernel(const float* __restrict px, float* __restrict po, int64_t n, const DsqConsts& c) {
  const float l = c.l, u = c.u, delta = c.delta, last = c.last, kd = c.kd, s = c.s;
  for (int64_t k = 0; k < n; ++k) {
    const float xc = std::min(std::max(px[k], l), u);
    const float t = (xc - l) / delta;
    const float i = cell_index(t, last);
    const float z = kd * ((t - i) - 0.5f);
    const float near = round_even(i + 0.5f * (s * tanh_small(z) + 1.f));
    const float far = z > 0.f ? i + 1.f : i;
    po[k] = l + delta * (std::fabs(z) < kSmallZ ? near : far);
  }
}

namespace {

// One element of the backward: writes dx, returns the six terms of DsqGradSums (in its order).
// The clip's weights are LibTorch 1.13's maximum/minimum backward: the larger (maximum) or smaller
// (minimum) input takes the whole gradient, and at a tie each input takes half.
struct DsqTerms {
  float dy, l, u, delta, tanh, kd;
};
inline DsqTerms dsq_element(float x, float dy, float* dx, float l, float u, float delta, float last, float kd,
                            float s, float slope) {
  const float xm = std::max(x, l);
  const float xc = std::min(xm, u);
  const float t = (xc - l) / delta;
  const float i = cell_index(t, last);
  const float w = (t - i) - 0.5f;
  const float g = tanh_approx(kd * w);
  const float soft = i + 0.5f * (s * g + 1.f);
  const float omg = 1.f - g * g;
  const float a = dy * slope * omg;                                // dy * dsoft/dt
  const float wx = x > l ? 1.f : (x == l ? 0.5f : 0.f);            // maximum(x, l) -> x
  const float wm = xm < u ? 1.f : (xm == u ? 0.5f : 0.f);          // minimum(xm, u) -> xm
  *dx = a * wm * wx;
  return {dy, a * (wm * (1.f - wx) - 1.f), a * (1.f - wm), dy * soft - a * t, dy * g, dy * omg * w};
}

}  // namespace

// The sums run in kLanes independent float lanes, a fixed order whatever the vector width, so
// the compiler vectorises them without reassociating anything. Each block of kBlock elements
// (16 per lane) is flushed into double, so float rounding never accumulates over more than 16
// terms: d/dalpha's sum cancels by orders of magnitude and needs that (the test's bound). Per
// chunk the order is fixed, so results do not depend on the thread count.
QBENCH_CLONES
DsqGradSums dsq_backward_kernel(const float* __restrict px, const float* __restrict pg, float* __restrict pgx,
                                int64_t n, const DsqConsts& c) {
  const float l = c.l, u = c.u, delta = c.delta, last = c.last, kd = c.kd, s = c.s, slope = c.slope;
  constexpr int kLanes = 16, kBlock = 16 * kLanes;
  DsqGradSums sums;
  int64_t j = 0;
  for (; j + kBlock <= n; j += kBlock) {
    float s_dy[kLanes] = {}, s_l[kLanes] = {}, s_u[kLanes] = {}, s_d[kLanes] = {}, s_g[kLanes] = {}, s_k[kLanes] = {};
    for (int b = 0; b < kBlock; b += kLanes) {
      for (int k = 0; k < kLanes; ++k) {
        const DsqTerms e = dsq_element(px[j + b + k], pg[j + b + k], pgx + j + b + k, l, u, delta, last, kd, s, slope);
        s_dy[k] += e.dy;
        s_l[k] += e.l;
        s_u[k] += e.u;
        s_d[k] += e.delta;
        s_g[k] += e.tanh;
        s_k[k] += e.kd;
      }
    }
    for (int k = 0; k < kLanes; ++k) {
      sums.dy += static_cast<double>(s_dy[k]);
      sums.l += static_cast<double>(s_l[k]);
      sums.u += static_cast<double>(s_u[k]);
      sums.delta += static_cast<double>(s_d[k]);
      sums.tanh += static_cast<double>(s_g[k]);
      sums.kd += static_cast<double>(s_k[k]);
    }
  }
  for (; j < n; ++j) {
    const DsqTerms e = dsq_element(px[j], pg[j], pgx + j, l, u, delta, last, kd, s, slope);
    sums.dy += static_cast<double>(e.dy);
    sums.l += static_cast<double>(e.l);
    sums.u += static_cast<double>(e.u);
    sums.delta += static_cast<double>(e.delta);
    sums.tanh += static_cast<double>(e.tanh);
    sums.kd += static_cast<double>(e.kd);
  }
  return sums;
}

}  // namespace qbench::qat::kernels
