// A cell under a deployment-system noise (issue 20, SysNoise): the plain cell's model (baseline
// and quantization untouched) evaluated through a noisy test pipeline or in reduced precision,
// against the reference the noise is measured from, with the images whose prediction flips.
#include <ATen/ATen.h>
#include <torch/utils.h>

#include <cstdio>
#include <fstream>
#include <iterator>

#include "qbench/common/errors.h"
#include "qbench/common/progress.h"
#include "qbench/data/imagefolder.h"
#include "qbench/data/idx.h"
#include "qbench/quant/device.h"
#include "qbench/runner/precision_noise.h"
#include "qbench/sysnoise/colour.h"
#include "qbench/sysnoise/jpeg.h"
#include "qbench/sysnoise/noise.h"
#include "qbench/sysnoise/resize.h"
#include "session.h"

namespace qbench::runner::detail {
namespace {

using sysnoise::Image;

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path + ": cannot open image file");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Indices of the test subset in the full split: the selection data::seeded_subset makes.
std::vector<int64_t> subset_indices(int64_t n, int64_t count) {
  if (count <= 0 || count >= n) {
    std::vector<int64_t> all(static_cast<std::size_t>(n));
    for (int64_t i = 0; i < n; ++i) all[static_cast<std::size_t>(i)] = i;
    return all;
  }
  auto perm = data::seeded_permutation(n, 0);
  perm.resize(static_cast<std::size_t>(count));
  return perm;
}

std::string fixed2(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

}  // namespace

std::string NoisePipeline::id() const {
  std::string s = reencode ? std::string("jpeg-") + sysnoise::decoder_name(decoder) : "file-" + std::string(sysnoise::decoder_name(decoder));
  if (kernel) s += std::string("+") + sysnoise::resize_kernel_name(*kernel);
  if (yuv) s += "+yuv" + std::to_string(static_cast<int>(yuv->first)) + std::to_string(static_cast<int>(yuv->second));
  return s;
}

const Session::NoiseSource& Session::noise_source() {
  if (noise_source_) return *noise_source_;
  NoiseSource src;
  config::DatasetSpec spec = data::with_defaults(dataset_spec());
  const auto& entry = data::dataset_registry().get(spec.name);
  const std::string root = spec.root.empty() ? entry.default_root : spec.root;
  if (spec.name == "imagefolder") {
    const auto idx = data::index_image_split(root, data::Split::Test);
    src.image_size = spec.image_size;
    for (int64_t i : subset_indices(static_cast<int64_t>(idx.files.size()), m_.dataset.test_subset))
      src.files.push_back(idx.files[static_cast<std::size_t>(i)]);
  } else if (spec.name == "fashion-mnist" || spec.name == "mnist") {
    std::string path = root + "/t10k-images-idx3-ubyte.gz";
    if (!std::ifstream(path)) path = root + "/t10k-images-idx3-ubyte";
    const data::IdxArray raw = data::read_idx(path);
    const int h = static_cast<int>(raw.dims[1]), w = static_cast<int>(raw.dims[2]);
    const std::size_t plane = static_cast<std::size_t>(h) * w;
    for (int64_t i : subset_indices(raw.dims[0], m_.dataset.test_subset)) {
      Image img(w, h, 1);
      std::copy_n(raw.bytes.begin() + static_cast<std::ptrdiff_t>(plane * static_cast<std::size_t>(i)), plane,
                  img.pixels.begin());
      src.images.push_back(std::move(img));
    }
    // The dataset's own float for each byte value (so the reference pipeline reproduces the plain
    // evaluation bit for bit): read off the plain split, which holds the same images.
    const at::Tensor plain = noise_images("raw");
    const float* f = plain.data_ptr<float>();
    src.lut.assign(256, 0.0f);
    std::vector<bool> seen(256, false);
    for (std::size_t k = 0; k < src.images.size(); ++k)
      for (std::size_t j = 0; j < plane; ++j) {
        const uint8_t v = src.images[k].pixels[j];
        if (!seen[v]) src.lut[v] = f[k * plane + j], seen[v] = true;
        else if (src.lut[v] != f[k * plane + j])
          throw Error("noise evaluation: " + path + " does not hold the test split's pixels (value " +
                      std::to_string(v) + " maps to two floats)");
      }
    // Byte values the split never shows (a decoder can produce them): the same affine map.
    int lo = -1, hi = -1;
    for (int v = 0; v < 256; ++v)
      if (seen[v]) {
        if (lo < 0) lo = v;
        hi = v;
      }
    if (lo < 0 || hi <= lo) throw Error("noise evaluation: the test images have fewer than two grey levels");
    const float a = (src.lut[hi] - src.lut[lo]) / static_cast<float>(hi - lo), b = src.lut[lo] - a * lo;
    for (int v = 0; v < 256; ++v)
      if (!seen[v]) src.lut[v] = a * static_cast<float>(v) + b;
  } else {
    throw Error("noise evaluation needs the test images as stored pixels: dataset '" + spec.name +
                "' is not supported (fashion-mnist, mnist, imagefolder)");
  }
  noise_source_ = std::move(src);
  return *noise_source_;
}

const at::Tensor& Session::noise_images(const std::string& id, const NoisePipeline* p) {
  auto it = noise_images_.find(id);
  if (it != noise_images_.end()) return it->second;
  if (!p) return noise_images_.emplace(id, data::load_all(test_split()).images).first->second;  // the plain split
  const NoiseSource& src = noise_source();
  at::Tensor out;
  if (!src.images.empty()) {
    // Stored 8-bit pixels: encoded once per quality (the JPEG bytes every decoder reads), decoded.
    auto& bytes = jpeg_cache_[m_.noise.jpeg_quality];
    if (bytes.empty())
      for (const auto& img : src.images) bytes.push_back(sysnoise::encode_jpeg(img, m_.noise.jpeg_quality));
    const Image& first = src.images.front();
    out = at::empty({static_cast<int64_t>(src.images.size()), first.channels, first.height, first.width}, at::kFloat);
    float* dst = out.data_ptr<float>();
    const std::size_t plane = first.pixels.size();
    for (std::size_t k = 0; k < src.images.size(); ++k) {
      report("decoding test images (" + id + ") " + std::to_string(k) + "/" + std::to_string(src.images.size()));
      const Image img = sysnoise::decode_jpeg(bytes[k], p->decoder);
      if (img.pixels.size() != plane) throw Error("noise evaluation: a decoded test image changed its size");
      for (std::size_t j = 0; j < plane; ++j) dst[k * plane + j] = src.lut[img.pixels[j]];
    }
  } else {
    // An image folder: the files' own bytes, then the evaluation transform of lib/data (resize the
    // shorter side to floor(S / 0.875), centre crop S) with the noise's decoder, colour and kernel.
    const int64_t s = src.image_size;
    out = at::empty({static_cast<int64_t>(src.files.size()), 3, s, s}, at::kFloat);
    float* dst = out.data_ptr<float>();
    float scale[3], shift[3];
    for (int c = 0; c < 3; ++c) {
      scale[c] = 1.0f / (255.0f * data::kImageNetStd[c]);
      shift[c] = data::kImageNetMean[c] / data::kImageNetStd[c];
    }
    for (std::size_t k = 0; k < src.files.size(); ++k) {
      if (k % 64 == 0) report("decoding test images (" + id + ") " + std::to_string(k) + "/" + std::to_string(src.files.size()));
      const auto bytes = read_bytes(src.files[k]);
      const bool jpeg = data::image_format(bytes.data(), bytes.size()) == "JPEG";
      if (!jpeg && !p->reencode && p->decoder != sysnoise::Decoder::kIslow)
        throw DataError(src.files[k] + ": a decode noise needs JPEG files, and this is not one");
      Image img = jpeg ? sysnoise::decode_jpeg(bytes, p->decoder) : sysnoise::load_image(src.files[k]);
      if (img.channels == 1) img = sysnoise::grey_to_rgb(img);
      if (p->yuv) img = sysnoise::yuv_round_trip(img, p->yuv->first, p->yuv->second);
      const auto g = data::eval_geometry(img.width, img.height, s);
      if (g.resized_w != img.width || g.resized_h != img.height) {
        // lib/data's kernel (area when shrinking both sides, else bilinear) unless the noise swaps it.
        const auto kernel = p->kernel ? *p->kernel
                                      : (g.resized_w < img.width && g.resized_h < img.height ? sysnoise::ResizeKernel::kCvArea
                                                                                             : sysnoise::ResizeKernel::kCvBilinear);
        img = sysnoise::resize(img, static_cast<int>(g.resized_w), static_cast<int>(g.resized_h), kernel);
      }
      float* o = dst + k * 3 * s * s;
      for (int64_t y = 0; y < s; ++y)
        for (int64_t x = 0; x < s; ++x)
          for (int c = 0; c < 3; ++c)
            o[c * s * s + y * s + x] = static_cast<float>(img.at(static_cast<int>(g.crop_x + x), static_cast<int>(g.crop_y + y), c)) *
                                           scale[c] -
                                       shift[c];
    }
  }
  return noise_images_.emplace(id, out).first->second;
}

std::vector<int64_t> Session::predictions(quant::QuantModel& model, const at::Tensor& images) {
  torch::NoGradGuard no_grad;
  model.eval();
  const at::Device device = quant::module_device(model);
  const int64_t n = images.size(0), bs = m_.eval.batch_size;
  std::vector<int64_t> out;
  out.reserve(static_cast<std::size_t>(n));
  for (int64_t start = 0; start < n; start += bs) {
    check_interrupt();
    report("evaluating " + std::to_string(start) + "/" + std::to_string(n));
    const at::Tensor logits = model.forward(quant::on_device(images.narrow(0, start, std::min(bs, n - start)), device));
    const at::Tensor pred = logits.argmax(1).to(at::kCPU).contiguous();
    const int64_t* p = pred.data_ptr<int64_t>();
    out.insert(out.end(), p, p + pred.numel());
  }
  return out;
}

void Session::evaluate_noise(CellRun& run) {
  const config::Cell& cell = run.cell;
  const sysnoise::Noise& noise = sysnoise::find_noise(cell.noise);
  const data::Dataset& test = test_split();
  run.test = &test;
  const at::Tensor labels = data::all_labels(test);
  const int64_t* y = labels.data_ptr<int64_t>();
  const int64_t n = labels.numel();
  auto top1 = [&](const std::vector<int64_t>& pred) {
    int64_t hit = 0;
    for (int64_t i = 0; i < n; ++i) hit += pred[static_cast<std::size_t>(i)] == y[i];
    return n ? 100.0 * static_cast<double>(hit) / static_cast<double>(n) : 0.0;
  };
  // Predictions of this cell's model on a pipeline's images, shared by the cells that evaluate the
  // same plain cell (the model is a pure function of the plain cell's key).
  auto preds = [&](const std::string& id, const NoisePipeline* p) -> const std::vector<int64_t>& {
    const std::string key = cell.plain_key + "|" + id + (p && p->reencode ? "|q" + std::to_string(m_.noise.jpeg_quality) : "");
    auto it = noise_preds_.find(key);
    if (it == noise_preds_.end()) it = noise_preds_.emplace(key, predictions(*run.model, noise_images(id, p))).first;
    return it->second;
  };

  auto t0 = std::chrono::steady_clock::now();
  std::string reference_name = "the plain evaluation";
  std::map<std::string, double> values;
  std::vector<int64_t> noisy;
  const std::vector<int64_t>* reference = nullptr;
  std::string text;
  switch (noise.kind) {
    case sysnoise::NoiseKind::kDecode: {
      const bool reencode = !noise_source().images.empty();  // stored pixels, not JPEG files
      NoisePipeline ref{sysnoise::Decoder::kIslow, reencode, std::nullopt, std::nullopt};
      NoisePipeline var{noise.decoder, reencode, std::nullopt, std::nullopt};
      reference = &preds(ref.id(), &ref);
      noisy = preds(var.id(), &var);
      reference_name = "libjpeg-turbo ISLOW on the same bytes";
      if (reencode) {
        const double raw = top1(preds("raw", nullptr));
        values["raw_top1"] = raw;
        values["quality_cost"] = raw - top1(*reference);
        values["jpeg_quality"] = m_.noise.jpeg_quality;
        text = std::string("test images encoded once as JPEG at quality ") + std::to_string(m_.noise.jpeg_quality) +
               ", decoded by " + sysnoise::decoder_name(noise.decoder) +
               " against libjpeg-turbo ISLOW on the same bytes; quality_cost = raw pixels - ISLOW";
      } else {
        text = std::string("the folder's JPEG files decoded by ") + sysnoise::decoder_name(noise.decoder) +
               " against libjpeg-turbo ISLOW on the same bytes";
      }
      break;
    }
    case sysnoise::NoiseKind::kResize:
    case sysnoise::NoiseKind::kColour: {
      NoisePipeline var{sysnoise::Decoder::kIslow, false, std::nullopt, std::nullopt};
      if (noise.kind == sysnoise::NoiseKind::kResize) var.kernel = noise.kernel;
      else var.yuv = std::make_pair(noise.yuv_standard, noise.yuv_range);
      reference = &preds("raw", nullptr);
      noisy = preds(var.id(), &var);
      text = noise.kind == sysnoise::NoiseKind::kResize
                 ? std::string("evaluation resize by ") + sysnoise::resize_kernel_name(noise.kernel) +
                       " instead of lib/data's (OpenCV area when shrinking, else bilinear)"
                 : "RGB through 8-bit YUV and back before the evaluation transform (" + noise.description + ")";
      break;
    }
    case sysnoise::NoiseKind::kPrecision: {
      reference = &preds("raw", nullptr);
      const bool bf16 = cell.noise == "bf16";
      set_reduced_precision(*run.model, bf16 ? ReducedPrecision::kBf16 : ReducedPrecision::kFp16Emulated);
      noisy = predictions(*run.model, noise_images("raw", nullptr));
      clear_reduced_precision(*run.model);
      text = bf16 ? "bfloat16: every conv/linear run natively in bfloat16 on the CPU, outputs rounded to bfloat16"
                  : "fp16 emulated: every conv/linear layer's inputs, weights and outputs rounded to IEEE half at the "
                    "layer boundary, float32 inside (LibTorch 1.13 has no half conv on the CPU)";
      break;
    }
    case sysnoise::NoiseKind::kMode: {
      if (cell.noise == "align-corners") throw Error("noise 'align-corners': no architecture here upsamples");
      reference = &preds("raw", nullptr);
      quant::PoolingModes& modes = run.model->pooling_modes();
      modes.reset_changes();
      modes.flip_ceil_mode = cell.noise == "ceil-mode";
      modes.flip_count_include_pad = cell.noise == "count-include-pad";
      try {
        noisy = predictions(*run.model, noise_images("raw", nullptr));
      } catch (...) {
        modes = quant::PoolingModes{};
        throw;
      }
      const int64_t changed = modes.changes();
      modes = quant::PoolingModes{};
      if (changed == 0) throw Error("noise '" + cell.noise + "' changed no pooling layer of " + cell.arch);
      text = cell.noise == "ceil-mode"
                 ? "every pooling layer's ceil_mode flipped at inference (output sizes change where a window overhangs)"
                 : "every average pooling layer's count_include_pad flipped at inference (padded windows' divisors change)";
      break;
    }
    default:
      throw Error("noise '" + cell.noise + "' (" + sysnoise::kind_name(noise.kind) + ") cannot be evaluated yet");
  }
  int64_t flips = 0;
  for (int64_t i = 0; i < n; ++i) flips += noisy[static_cast<std::size_t>(i)] != (*reference)[static_cast<std::size_t>(i)];
  const double t = top1(noisy), ref_top1 = top1(*reference);
  values["top1"] = t;
  values["reference_top1"] = ref_top1;
  values["delta"] = t - ref_top1;
  values["flips"] = static_cast<double>(flips);
  values["images"] = static_cast<double>(n);
  store::CellResult& r = run.row;
  r.top1 = t;
  r.eval_images = n;
  r.eval_wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.fp32_top1 = baseline_eval(cell).top1;
  r.details.push_back({"noise", cell.noise, values, text + " (reference: " + reference_name + ")"});
  log_info(cell_label(cell) + ": top-1 " + fixed2(t) + "% against " + fixed2(ref_top1) + "% (" + reference_name + "), " +
           std::to_string(flips) + " of " + std::to_string(n) + " predictions flip");
}

}  // namespace qbench::runner::detail
