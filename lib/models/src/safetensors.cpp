#include "qbench/models/safetensors.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "qbench/common/errors.h"

namespace qbench::models {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct DtypeInfo {
  const char* name;
  at::ScalarType type;
  int64_t bytes;
};
const DtypeInfo kDtypes[] = {{"F32", at::kFloat, 4}, {"F64", at::kDouble, 8}, {"F16", at::kHalf, 2},
                             {"BF16", at::kBFloat16, 2}, {"I64", at::kLong, 8}, {"I32", at::kInt, 4},
                             {"I8", at::kChar, 1}, {"U8", at::kByte, 1}, {"BOOL", at::kBool, 1}};

const DtypeInfo* by_name(const std::string& n) {
  for (const auto& d : kDtypes)
    if (n == d.name) return &d;
  return nullptr;
}
const DtypeInfo* by_type(at::ScalarType t) {
  for (const auto& d : kDtypes)
    if (t == d.type) return &d;
  return nullptr;
}

bool is_quantizer_path(const std::string& name) {
  for (const char* seg : {"weight_quant.", "input_quant.", "output_quant."}) {
    const auto pos = name.find(seg);
    if (pos != std::string::npos && (pos == 0 || name[pos - 1] == '.')) return true;
  }
  return false;
}

std::string strip_prefix(const std::string& n) {
  for (const char* p : {"module.", "model."})
    if (n.rfind(p, 0) == 0) return n.substr(std::strlen(p));
  return n;
}

std::string shape_str(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::map<std::string, at::Tensor> sorted;
  for (const auto& [n, t] : tensors) {
    if (!sorted.emplace(n, t).second) throw DataError(path + ": duplicate tensor name '" + n + "'");
  }
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> data;
  int64_t offset = 0;
  for (const auto& [n, t] : sorted) {
    const auto* d = by_type(t.scalar_type());
    if (!d) throw DataError(path + ": tensor '" + n + "' has a dtype safetensors export does not handle");
    auto c = t.detach().to(at::kCPU).contiguous();
    const int64_t bytes = c.numel() * d->bytes;
    header[n] = {{"dtype", d->name}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(c);
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  const fs::path tmp = path + ".tmp";
  if (fs::path(path).has_parent_path()) fs::create_directories(fs::path(path).parent_path());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw DataError(path + ": cannot open for writing");
    unsigned char len[8];
    uint64_t n = h.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));  // little-endian
    f.write(reinterpret_cast<const char*>(len), 8);
    f.write(h.data(), static_cast<std::streamsize>(h.size()));
    // Tensor bytes are written in host order; this machine (x86-64/aarch64) is little-endian.
    for (const auto& c : data) f.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.nbytes()));
    if (!f) throw DataError(path + ": write failed");
  }
  fs::rename(tmp, path);
}

NamedTensors load_safetensors(const std::string& path, std::map<std::string, std::string>* metadata) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw DataError(path + ": cannot open safetensors file");
  std::error_code ec;
  const auto file_size = static_cast<int64_t>(fs::file_size(path, ec));
  if (ec || file_size < 8) throw DataError(path + ": truncated safetensors file (shorter than its 8-byte header length)");
  unsigned char len[8];
  f.read(reinterpret_cast<char*>(len), 8);
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= static_cast<uint64_t>(len[i]) << (8 * i);
  if (hlen > static_cast<uint64_t>(file_size - 8))
    throw DataError(path + ": truncated safetensors file (header length " + std::to_string(hlen) + " exceeds the file)");
  std::string h(hlen, '\0');
  f.read(h.data(), static_cast<std::streamsize>(hlen));
  json header;
  try {
    header = json::parse(h);
  } catch (const json::exception& e) {
    throw DataError(path + ": malformed safetensors header: " + e.what());
  }
  if (!header.is_object()) throw DataError(path + ": malformed safetensors header: not a JSON object");
  const int64_t data_start = 8 + static_cast<int64_t>(hlen), data_size = file_size - data_start;
  NamedTensors out;
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      if (metadata && v.is_object())
        for (const auto& [k, s] : v.items()) (*metadata)[k] = s.is_string() ? s.get<std::string>() : s.dump();
      continue;
    }
    const std::string where = path + ": tensor '" + name + "'";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets") ||
        !v["dtype"].is_string() || !v["shape"].is_array() || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      throw DataError(where + ": malformed header entry (needs dtype, shape, data_offsets [begin, end])");
    const auto* d = by_name(v["dtype"].get<std::string>());
    if (!d) throw DataError(where + ": dtype " + v["dtype"].get<std::string>() + " cannot be handled");
    std::vector<int64_t> shape;
    int64_t numel = 1;
    for (const auto& s : v["shape"]) {
      if (!s.is_number_integer() || s.get<int64_t>() < 0) throw DataError(where + ": malformed shape " + v["shape"].dump());
      shape.push_back(s.get<int64_t>());
      numel *= shape.back();
    }
    const auto& off = v["data_offsets"];
    if (!off[0].is_number_integer() || !off[1].is_number_integer())
      throw DataError(where + ": malformed data_offsets " + off.dump());
    const int64_t b = off[0].get<int64_t>(), e = off[1].get<int64_t>();
    if (b < 0 || e < b || e > data_size)
      throw DataError(where + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(e) +
                      "] outside the " + std::to_string(data_size) + " data bytes (truncated file?)");
    if (e - b != numel * d->bytes)
      throw DataError(where + ": data_offsets span " + std::to_string(e - b) + " bytes, but " + d->name + " " +
                      shape_str(shape) + " needs " + std::to_string(numel * d->bytes));
    auto t = at::empty(shape, at::TensorOptions().dtype(d->type));
    f.seekg(data_start + b);
    f.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(e - b));
    if (!f) throw DataError(where + ": read failed (truncated file?)");
    out.emplace_back(name, std::move(t));
  }
  return out;
}

NamedTensors model_state(quant::QuantModel& model) {
  NamedTensors out;
  for (const auto& p : model.named_parameters(/*recurse=*/true))
    if (!is_quantizer_path(p.key())) out.emplace_back(p.key(), p.value());
  for (const auto& b : model.named_buffers(/*recurse=*/true))
    if (!is_quantizer_path(b.key())) out.emplace_back(b.key(), b.value());
  return out;
}

void export_weights(quant::QuantModel& model, const std::string& path, const std::map<std::string, std::string>& metadata) {
  save_safetensors(path, model_state(model), metadata);
}

ImportResult import_weights(quant::QuantModel& model, const std::string& path) {
  std::map<std::string, at::Tensor> file;
  for (auto& [n, t] : load_safetensors(path)) file[strip_prefix(n)] = t;
  ImportResult r;
  std::set<std::string> used;
  c10::NoGradGuard ng;
  for (auto& [name, dst] : model_state(model)) {
    auto it = file.find(name);
    if (it == file.end()) {
      if (name.size() >= 19 && name.compare(name.size() - 19, 19, "num_batches_tracked") == 0) {
        r.defaulted.push_back(name);
        continue;
      }
      throw DataError(path + ": missing tensor '" + name + "' (the model has it; is this file for another architecture?)");
    }
    const auto& src = it->second;
    if (src.sizes() != dst.sizes())
      throw DataError(path + ": tensor '" + name + "' has shape " + shape_str(src.sizes()) + ", the model expects " +
                      shape_str(dst.sizes()) + " (other num_classes, input channels, width or stem?)");
    if (at::isFloatingType(dst.scalar_type()) != at::isFloatingType(src.scalar_type()))
      throw DataError(path + ": tensor '" + name + "' has dtype " + std::string(c10::toString(src.scalar_type())) +
                      ", the model expects " + c10::toString(dst.scalar_type()));
    dst.copy_(src);
    used.insert(it->first);
    ++r.tensors;
  }
  for (const auto& [n, t] : file)
    if (!used.count(n)) throw DataError(path + ": tensor '" + n + "' is not part of the model (wrong architecture?)");
  return r;
}

}  // namespace qbench::models
