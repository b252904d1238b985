#pragma once
// What the reconstruction tests share: the context a short reconstruction runs in.
#include <ATen/ATen.h>

#include <cstdint>
#include <string>

#include "qbench/ptq/recon.h"
#include "qbench/quant/algorithm.h"
#include "qbench/quant/profile.h"

namespace qbench::test {

/// A cell under `profile` at w_bits/a_bits and `seed`, calibrated on 96 random 1x28x28 images
/// (drawn from seed 1234, so they do not depend on the cell's seed) in batches of 32, with the
/// reconstruction defaults but `iters` iterations of batch 16 at lr 1e-2, as the runner hands them
/// to the algorithm.
inline quant::AlgorithmContext recon_ctx(const std::string& profile, uint64_t seed, int64_t iters, int w_bits = 4,
                                         int a_bits = 4) {
  quant::AlgorithmContext ctx;
  ctx.profile = &quant::profile_registry().get(profile);
  ctx.w_bits = w_bits;
  ctx.a_bits = a_bits;
  ctx.seed = seed;
  at::manual_seed(1234);
  ctx.calib_images = at::randn({96, 1, 28, 28});
  ctx.calib_batch_size = 32;
  ptq::ReconParams p = ptq::recon_options().defaults();
  p.iters = iters;
  p.batch_size = 16;
  // The papers' lr 1e-3 is for 20,000 steps: V (|V| <= 2.4 decides h) cannot travel far enough in
  // a few hundred, so these shortened schedules scale it up.
  p.lr = 1e-2;
  ctx.settings = ptq::recon_options().to_json(p);
  return ctx;
}

}  // namespace qbench::test
