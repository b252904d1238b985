#pragma once
// The experiment matrix: a parsed, validated YAML file and its expansion into cells.
// Torch-free, so it compiles in seconds and its tests need no LibTorch.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qbench/common/cell.h"
#include "qbench/common/options.h"
#include "qbench/common/source_mark.h"

namespace qbench::config {

using qbench::CellKind;
using qbench::CellStatus;

/// Weight and activation bit widths; 32 means "stays float". A `mixed` entry is a budget, not a
/// width: `mixed` holds its bounds (size_kb, bops_ratio, avg_w_bits, avg_a_bits, latency_ms) and
/// the search (pipeline.mixed_precision) chooses each layer's widths under them; w and a are then
/// the largest candidate widths (what the add quantizers, which the search leaves out, take).
struct BitWidth {
  int w = 32;
  int a = 32;
  std::map<std::string, double> mixed;
  SourceMark mark;  ///< where a mixed entry was written (errors found once the model is built)
  bool is_float() const { return w == 32 && a == 32 && mixed.empty(); }
  bool is_mixed() const { return !mixed.empty(); }
  /// "w4a4", "w8a8", "w2a4", "fp32" for 32/32, "mixed:avg_a_bits=6,avg_w_bits=3" for a budget.
  std::string label() const;
  /// A budget is its identity (its w and a follow from the matrix's candidates).
  bool operator==(const BitWidth& o) const {
    if (is_mixed() || o.is_mixed()) return mixed == o.mixed;
    return w == o.w && a == o.a;
  }
  bool operator<(const BitWidth& o) const {
    if (is_mixed() || o.is_mixed()) return mixed < o.mixed;
    return w != o.w ? w < o.w : a < o.a;
  }
};
/// The budget keys a `mixed` bits entry accepts.
const std::vector<std::string>& mixed_budget_keys();

/// How mixed-precision cells choose their widths (YAML pipeline.mixed_precision). Only cells with
/// a `mixed` bits entry read it, and only their keys hold it.
struct MixedPrecisionRecipe {
  std::string sensitivity = "hessian";  ///< hessian | fisher | loss
  std::vector<int> w_candidates{2, 3, 4, 8};
  std::vector<int> a_candidates{4, 8};
  int probes = 64;           ///< Hutchinson: the most Rademacher probes
  double tolerance = 0.01;   ///< Hutchinson: stop when the trace's standard error is below this share
  int64_t images = 256;      ///< calibration images the sensitivities are measured on
  SourceMark mark;           ///< of pipeline.mixed_precision.candidates (errors about widths)
};
/// The sensitivity measures pipeline.mixed_precision.sensitivity accepts.
const std::vector<std::string>& sensitivity_names();

/// Where the data comes from and how much of it a run uses.
struct DatasetSpec {
  std::string name = "fashion-mnist";
  std::string root;          ///< empty: the dataset's default location (CLI --data-root overrides)
  int64_t train_subset = 0;  ///< 0: the whole training split; else a seeded subset of this size
  int64_t test_subset = 0;   ///< 0: the whole test split (the number reported); else a fixed subset
  int workers = 0;           ///< decoding threads of streaming datasets (0: one per core); not in the key
  // Options of individual datasets (see dataset_option_fields). 0 = the dataset does not use it
  // (or, in a DatasetSpec built in code, its default). The parser fills every option the named
  // dataset declares with its default, so the resolved configuration states each value.
  int64_t image_size = 0;  ///< imagefolder, synthetic: side of the square network input
  int64_t channels = 0;    ///< synthetic: image channels
  int64_t classes = 0;     ///< synthetic: number of classes
  int64_t train_size = 0;  ///< synthetic: images in the training split
  int64_t test_size = 0;   ///< synthetic: images in the test split
};

/// A per-dataset integer option of DatasetSpec: its YAML key, field and valid range. Which
/// datasets read which option (and its default) comes from the dataset registry via the Catalog.
struct DatasetOptionField {
  const char* key;
  int64_t DatasetSpec::*field;
  int64_t lo, hi;
};
const std::vector<DatasetOptionField>& dataset_option_fields();

/// The aligned FP32 training recipe (MQBench: SGD Nesterov, warm-up then cosine, label smoothing).
struct TrainRecipe {
  int epochs = 3;
  int batch_size = 128;
  double lr = 0.1;               ///< peak learning rate after warm-up
  double warmup_epochs = 0.5;    ///< linear warm-up length (fractional epochs allowed)
  double warmup_start_lr = 1e-4;
  double momentum = 0.9;
  bool nesterov = true;
  double weight_decay = 5e-4;    ///< not applied to BatchNorm parameters and biases
  double label_smoothing = 0.1;
  bool augment = true;           ///< random crop (pad 2) + horizontal flip
};

/// Which range observer calibrates weights and activations (names from Catalog::observers).
struct ObserverChoice {
  std::string weight = "minmax";
  std::string activation = "minmax";
};

/// Where calibration images come from. YAML: pipeline.ptq.calibration. `data` (the default) keeps
/// the key of existing cells; zeroq/dsg synthesise images from the FP32 model's BN statistics.
struct CalibrationRecipe {
  std::string source = "data";  ///< data | zeroq | dsg
  int64_t iters = 500;          ///< synthesis steps per batch (ZeroQ's code: 500)
  double lr = 0.5;              ///< Adam on the images (ZeroQ's code: 0.5)
  int batch_size = 32;          ///< images synthesised together
};

/// Post-training quantization calibration.
struct PtqRecipe {
  int64_t calib_images = 1024;  ///< drawn reproducibly (per seed) from the training split
  int calib_batch_size = 256;
  ObserverChoice observer;      ///< YAML: `observer: NAME` (both) or `{weight: NAME, activation: NAME}`
  CalibrationRecipe calibration;
};

/// Quantization-aware fine-tuning from the FP32 checkpoint: the recipe for every QAT algorithm,
/// with per-algorithm overrides of any TrainRecipe key.
struct QatRecipe {
  TrainRecipe train{/*epochs=*/1, /*batch_size=*/128, /*lr=*/0.01, /*warmup_epochs=*/0.0,
                    /*warmup_start_lr=*/1e-4, /*momentum=*/0.9, /*nesterov=*/true,
                    /*weight_decay=*/5e-4, /*label_smoothing=*/0.1, /*augment=*/true};
  int64_t init_images = 256;  ///< images that initialise the quantizer parameters before training
  int64_t train_images = 0;   ///< fine-tuning images: 0 = the whole training split, else a seeded subset
  /// Where every learnable clipping range starts (issue 21): "paper" = each method's own rule
  /// (PACT's alpha = 10, QIL's and DSQ's observed max, LSQ's 2<|x|>/sqrt(Qp), ...); "mse" = the
  /// range the shared MSE observer picks at the cell's width, the same start for every method.
  /// Keyed only when it is not "paper", so existing matrices keep their keys.
  std::string range_init = "paper";
  /// algorithm (kind "qat") -> {TrainRecipe key: value}, validated against the keys' types/ranges.
  std::map<std::string, nlohmann::json> overrides;
};

struct EvalRecipe {
  int batch_size = 500;
};

struct LatencyRecipe {
  bool enabled = true;
  int batch_size = 32;
  int warmup = 5;
  int repeats = 30;
};

/// Engines that deploy every quantized cell besides the profile's own (YAML pipeline.deploy):
/// `engines: [onnxruntime]` exports each cell as ONNX QDQ and runs it in ONNX Runtime. Absent by
/// default, and then not part of any key.
struct DeployRecipe {
  std::vector<std::string> engines;
};
/// The engines pipeline.deploy.engines accepts.
const std::vector<std::string>& deploy_engine_names();

/// Settings of the noise axis (YAML pipeline.noise). Only the cells whose noise reads a setting
/// hold it in their key (jpeg_quality: the decode noises), so it never re-keys another cell.
struct NoiseRecipe {
  int jpeg_quality = 90;  ///< the quality the test images are encoded at once for the decode noises
};

/// Per-architecture options from the matrix file's `architectures:` map. They change the
/// network, so they are part of the baseline key (only when set, so existing keys stay valid).
/// An entry with `onnx:` defines a new architecture, named by its key: the ONNX file's graph.
struct ArchOptions {
  double width = 1.0;         ///< width multiplier
  std::string stem = "auto";  ///< auto | small | imagenet (see models::Stem)
  std::string weights;        ///< safetensors file: import FP32 weights instead of training
  std::string weights_sha256; ///< of the file's bytes, read when the matrix is parsed
  std::string onnx;           ///< ONNX file (relative paths resolved against the matrix file)
  std::string onnx_sha256;    ///< of its bytes: an edited file re-runs its cells
  /// onnx: false (default) evaluates the file's weights as the FP32 model; true trains its
  /// structure from a seeded initialisation with the FP32 recipe.
  bool train = false;
  SourceMark mark;            ///< where the entry starts, for errors found when the file is imported
  bool is_onnx() const { return !onnx.empty(); }
  bool is_default() const { return width == 1.0 && stem == "auto" && weights.empty() && onnx.empty(); }
};

/// One parsed `include`/`exclude` entry: axis name -> value as canonical string
/// (bits as label, seed as decimal, noise as its name).
using AxisAssignment = std::map<std::string, std::string>;

/// A 1-based line/column in the matrix file (0 = unknown, e.g. a Matrix built in code).
using SourceMark = qbench::SourceMark;

struct Matrix {
  std::string name;
  std::string description;  ///< free text from the file; not part of any key
  std::string file;       ///< path the matrix was read from ("<string>" for in-memory)
  std::string yaml_text;  ///< the file's exact bytes
  std::string yaml_hash;  ///< sha256 of yaml_text
  std::string size;       ///< the `sizes:` entry applied ("" = the file as written)
  DatasetSpec dataset;
  int threads = 2;        ///< intra-op threads (at::set_num_threads); recorded with every row
  TrainRecipe fp32;
  PtqRecipe ptq;
  QatRecipe qat;
  EvalRecipe eval;
  LatencyRecipe latency;
  DeployRecipe deploy;
  MixedPrecisionRecipe mixed_precision;
  NoiseRecipe noise;
  /// The algorithms' own settings, per declared section ("ptq.reconstruction" -> every option of
  /// that section, defaults filled in, typed): what the file gave, validated against the section's
  /// OptionTable (see Catalog, AlgorithmInfo::settings). Every section the catalog declares is present.
  std::map<std::string, nlohmann::json> settings;
  std::map<std::string, ArchOptions> arch_options;  ///< arch name -> options (absent = defaults)
  // Axes (deduplicated, in file order).
  std::vector<std::string> algorithms;
  std::vector<BitWidth> bits;
  std::vector<std::string> archs;
  std::vector<std::string> profiles;
  std::vector<uint64_t> seeds;
  /// BN folding strategies (MQBench's ablation axis): "profile" (the profile's own strategy, the
  /// default) or "-1".."4". Quantized cells only.
  std::vector<std::string> bn_folds{"profile"};
  /// Deployment-system noises (issue 20, SysNoise) the FP32 and quantized cells are evaluated
  /// under: "none" (the reference pipeline, the default) or names from Catalog::noises. A noise
  /// applies at evaluation only: the baseline and the quantization are those of the plain cell.
  std::vector<std::string> noises{"none"};
  /// Where each noise was written (parallel to `noises`; empty for the default), so checks made
  /// once the data is known (a colour noise on grey data) can name file:line:column.
  std::vector<SourceMark> noise_marks;
  std::vector<AxisAssignment> exclude;
  std::vector<AxisAssignment> include;
  /// Where each `include` entry starts in the file (parallel to `include`; may be shorter when the
  /// Matrix is built in code), so expansion errors can still name file:line:column.
  std::vector<SourceMark> include_marks;
};

/// What a name means to the validator: filled by the app from the real registries, so this
/// component stays torch-free and its tests can pass a small fake catalog.
struct AlgorithmInfo {
  std::string name;
  CellKind kind = CellKind::Ptq;
  /// The algorithm's settings (YAML pipeline.<stage>.<section>; empty when it has none). Their
  /// options with in_key join the key of this algorithm's cells, and only of those.
  SettingsSection settings;
};
/// A name that is not an algorithm of the registry, and why: a method not implemented yet, or a
/// name that belongs somewhere else in the file (zeroq and dsg are calibration sources).
struct Refusal {
  enum class Why { NotImplemented, ElsewhereInFile };
  Why why = Why::NotImplemented;
  std::string message;  ///< "planned QAT method ...", "a calibration source, not an algorithm: set ..."
};
/// A noise of the `noise` axis as the validator sees it (lib/sysnoise's table, through the app).
struct NoiseInfo {
  std::string name;
  std::string kind;  ///< none | decode | resize | colour | precision | mode
  std::string description;
};
struct Catalog {
  std::vector<AlgorithmInfo> algorithms;
  /// The names the `noise` axis accepts ("none" is always accepted).
  std::vector<NoiseInfo> noises;
  /// Noise names the table knows but the runner cannot apply yet -> why (refused at validation).
  std::map<std::string, std::string> unimplemented_noises;
  const NoiseInfo* find_noise(const std::string& name) const;
  std::vector<std::string> archs;
  std::vector<std::string> datasets;
  /// dataset -> {option key of dataset_option_fields -> default}: the options a dataset reads.
  /// A dataset without an entry takes none.
  std::map<std::string, std::map<std::string, int64_t>> dataset_options;
  std::vector<std::string> profiles;
  /// Profiles whose file loads but that cannot run yet (e.g. nnie's log domain) -> why.
  std::map<std::string, std::string> unrunnable_profiles;
  /// Profile -> sha256 of its canonical content: joins every quantized cell's key, so editing a
  /// profile file never lets a resumed run reuse results computed under the old definition.
  std::map<std::string, std::string> profile_hashes;
  /// Profile -> its BN folding strategy (-1..4); a profile without an entry counts as -1.
  std::map<std::string, int> profile_bn_fold;
  std::vector<std::string> observers;  ///< range observers usable in pipeline.ptq.observer
  /// Profile -> the weight and activation widths it allows (empty: any 2..8), and its caps.
  struct Widths {
    std::vector<int> w, a;
    int w_max = 8, a_max = 8;
    bool roofline = false;  ///< a width-dependent latency model (latency_ms budgets)
  };
  std::map<std::string, Widths> profile_widths;
  /// Algorithms whose quantizers are not a uniform grid (APoT's levels): the sensitivities measure
  /// the uniform grid, so a `mixed` entry refuses them.
  std::map<std::string, std::string> nonuniform_algorithms;
  /// Names that are not algorithms but that a user may write in the algorithm axis -> why not.
  std::map<std::string, Refusal> refused_algorithms;
  const AlgorithmInfo* find_algorithm(const std::string& name) const;
  /// The distinct settings sections the algorithms declare (one per stage.section; two algorithms
  /// that share a section declare the same table). Throws qbench::Error when they disagree.
  std::vector<const SettingsSection*> settings_sections() const;
};

/// Parses and validates a matrix file. Throws qbench::ConfigError naming file:line:column and the
/// key path on the first error (unknown key, wrong type, bits outside 2..8/32, unknown name with
/// the closest candidates, missing required key).
/// `size` names an entry of the file's `sizes:` map whose values are deep-merged over the file
/// before it is parsed (e.g. `--size cpu` for a CPU-sized run of a GPU-sized matrix); "" = none.
Matrix load_matrix_file(const std::string& path, const Catalog& catalog, const std::string& size = "");
/// Same, from text already in memory; `file` is used in error messages.
Matrix parse_matrix(const std::string& yaml_text, const std::string& file, const Catalog& catalog,
                    const std::string& size = "");

/// The QAT training recipe for `algorithm`: m.qat.train with m.qat.overrides[algorithm] applied
/// (unchanged when there is none).
TrainRecipe qat_recipe_for(const Matrix& m, const std::string& algorithm);

/// Parses "w4a4", "w8a8", "w2a4", "fp32", "32" forms. Throws qbench::ConfigError (no file; the
/// caller that knows where the text came from rethrows with file:line).
BitWidth parse_bits_label(const std::string& s);

/// One unit of work: a fully resolved configuration with a stable key.
struct Cell {
  std::string dataset;
  std::string arch;
  std::string algorithm;  ///< "fp32" for the baseline cell
  CellKind kind = CellKind::Fp32;
  std::string profile;    ///< "none" for the baseline cell
  BitWidth bits;
  uint64_t seed = 0;
  int bn_fold = -1;              ///< effective BN folding strategy (quantized cells)
  bool bn_fold_from_matrix = false;  ///< set by the bn_fold axis rather than the profile
  std::string noise = "none";   ///< the deployment noise it is evaluated under (issue 20)
  std::string noise_kind = "none";  ///< its kind (Catalog::noises)
  /// The key of the same cell without noise (== key when noise is none): the cell whose model a
  /// noise cell evaluates, and whose reference evaluations it shares.
  std::string plain_key;
  nlohmann::json resolved;   ///< canonical resolved configuration (what the key hashes)
  std::string key;           ///< sha256 hex of resolved.dump(); the baseline cell uses baseline_key
  std::string baseline_key;  ///< key of this cell's FP32 baseline (== key for the baseline cell)
  std::string short_key() const { return key.substr(0, 12); }
  /// The FP32 baseline cell itself (an FP32 cell under a noise is not: it has a key of its own).
  bool is_baseline() const { return key == baseline_key; }
  bool has_noise() const { return noise != "none"; }
};

/// Expands the matrix: for each arch x seed, its FP32 baseline cell first (then the baseline under
/// each noise other than none), then algorithm x bits x profile x noise (minus `exclude`, plus
/// `include`), in file order. A noise cell's resolved configuration adds `noise` (and, for decode
/// noises, `jpeg_quality`) to its plain cell's; `noise: none` adds nothing, so keys stay. `fp32` in the
/// algorithm axis denotes the baseline and is not crossed with bits/profiles; neither is `fp32`
/// in the bits axis (a quantizer at 32/32 bits is the baseline again). An `include` entry joins the
/// group of its arch x seed (a new group, baseline first, when that pair is not on the axes).
/// Throws qbench::ConfigError for an `include` entry that leaves an axis with several values open.
std::vector<Cell> expand_cells(const Matrix& m, const Catalog& catalog);

/// The canonical JSON of the FP32 baseline recipe for (dataset, arch, seed): hashes to the
/// baseline key, which also names the cached checkpoint.
nlohmann::json baseline_config(const Matrix& m, const std::string& arch, uint64_t seed);

}  // namespace qbench::config
