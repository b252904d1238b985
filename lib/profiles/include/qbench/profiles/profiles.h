#pragma once
// Hardware profiles as data: one YAML file per deployment target under experiments/profiles/
// (or any directory on the search path), read and validated into plain structs. Torch-free:
// lib/quant turns a ProfileSpec into its QuantSchemes and placement.
#include <string>
#include <vector>

namespace qbench::profiles {

/// How one kind of tensor (weights or activations) is quantized on the target.
struct SchemeSpec {
  std::string quantizer = "affine";      ///< affine | log (NNIE's log domain: not implemented)
  std::string granularity = "per-tensor";  ///< per-tensor | per-channel
  int axis = 0;                          ///< channel axis for per-channel (0 = output channels)
  bool symmetric = true;
  std::string signedness = "signed";     ///< signed | unsigned | auto (unsigned iff observed min >= 0)
  bool narrow_range = false;             ///< signed [-(2^(b-1)-1), 2^(b-1)-1]
  bool pot_scale = false;                ///< scales are powers of two
  int pot_max_frac_bits = 12;            ///< smallest scale 2^-pot_max_frac_bits
  std::vector<int> bits{2, 3, 4, 5, 6, 7, 8};  ///< cell bit widths the target accepts
  int max_bits = 8;                      ///< cap: a wider cell width quantizes at this many bits
  std::string observer = "minmax";       ///< default observer (a name from the observer registry)
  std::string fake_quant = "fixed";      ///< the target's recommended fake quantizer (informational)
  std::string describe() const;          ///< "per-channel sym signed narrow"
  std::string canonical() const;         ///< every field, fixed order (see ProfileSpec::canonical)
};

/// The target's declared peak figures, for modeled latency where no engine runs on this machine
/// (a roofline: each layer takes max(ops / peak ops, bytes / bandwidth)). Datasheet peaks, so the
/// model is an optimistic bound; the source says where each figure comes from.
struct RooflineSpec {
  std::string device;             ///< e.g. "NVIDIA T4"
  double peak_int8_tops = 0;      ///< dense INT8 tera-operations per second (1 MAC = 2 ops)
  double mem_bandwidth_gbs = 0;   ///< DRAM bandwidth, GB/s
  std::string source;
  bool declared() const { return peak_int8_tops > 0 && mem_bandwidth_gbs > 0; }
};

/// One layer's work for the roofline: multiply-accumulates and tensor sizes per sample.
struct LayerCost {
  std::string name;
  int64_t macs = 0;           ///< per sample
  int64_t weight_elems = 0;   ///< read once per batch
  int64_t in_elems = 0;       ///< per sample
  int64_t out_elems = 0;      ///< per sample
};

/// A layer's modeled time: max(2 * macs * batch / peak ops, bytes moved / bandwidth), where the
/// bytes are weights at w_bits plus the input and output activations at a_bits (the next layer's
/// input precision), all read or written once from DRAM. Returns milliseconds for the batch.
double roofline_layer_ms(const RooflineSpec& r, const LayerCost& l, int64_t batch, int w_bits, int a_bits);
/// The sum over the layers (ops between them, e.g. adds and pools, are not counted).
double roofline_ms(const RooflineSpec& r, const std::vector<LayerCost>& layers, int64_t batch, int w_bits,
                   int a_bits);

struct ProfileSpec {
  std::string name, description, source, notes;
  std::string file;         ///< where it was read from
  std::string text_sha256;  ///< of the file's bytes (provenance)
  SchemeSpec weight, activation;
  std::vector<std::string> placement;  ///< where activation quantizers go (see placement_names())
  int bn_fold = -1;                     ///< MQBench strategy -1..4 (-1: BN not folded)
  std::string first_last = "8bit";      ///< 8bit: first/last layer weights and input at 8 bits; cell
  std::string engine = "none";          ///< integer engine on this machine: none | onednn | qnnpack | onnxruntime
  /// How the target adds a conv/linear bias: "float" (the default: the float bias after the
  /// integer product, as oneDNN does) or "int32" (rounded to the accumulator's grid s_in * s_w, as
  /// ONNX Runtime's QLinearConv and ONNX QDQ's int32 bias do), which the simulation then models.
  std::string bias = "float";
  RooflineSpec roofline;                ///< optional: modeled latency for targets with no engine here
  /// Why a cell under this profile cannot run yet (e.g. log-domain quantization); empty = runnable.
  std::vector<std::string> not_implemented;
  /// Placements that are parsed and recorded but not attached yet (those tensors stay float).
  std::vector<std::string> unimplemented_placements;
  bool places(const std::string& p) const;
  /// One line: "W per-channel sym signed narrow | A per-tensor sym signed narrow | conv_linear_inputs,add_inputs | bn_fold 4".
  std::string summary() const;
  /// Every field that changes what a cell computes, in a fixed order and format (not the file's
  /// bytes: comments, key order and the free text do not count). A cell's resolved configuration
  /// can carry its SHA-256 so that editing a profile file changes the keys of its cells.
  std::string canonical() const;
  std::string canonical_sha256() const;
};

/// Every placement name a profile may list, and the ones lib/quant attaches today.
const std::vector<std::string>& placement_names();
const std::vector<std::string>& implemented_placements();

/// Parses one profile file's text. `known_observers`: the observer registry's names (empty =
/// not checked). Throws qbench::ConfigError with file:line:col and key path.
ProfileSpec parse_profile(const std::string& text, const std::string& file,
                          const std::vector<std::string>& known_observers = {});

/// The directories searched, in order: each entry of $QBENCH_PROFILES_DIR (':'-separated), then
/// the source tree's experiments/profiles (baked in at build time).
std::vector<std::string> profile_search_path();
std::string builtin_profiles_dir();

/// Reads every *.yaml in `dirs` (sorted by name within a directory; `academic` first overall).
/// A directory that does not exist fails unless `skip_missing_builtin` and it is the built-in
/// one; a profile name given by two files fails naming both.
std::vector<ProfileSpec> load_profiles(const std::vector<std::string>& dirs,
                                       const std::vector<std::string>& known_observers = {},
                                       bool skip_missing_builtin = false);
/// load_profiles(profile_search_path()), the built-in directory optional when the variable is set.
std::vector<ProfileSpec> load_default_profiles(const std::vector<std::string>& known_observers = {});

}  // namespace qbench::profiles
