#include "qbench/models/safetensors.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "qbench/common/errors.h"
#include "qbench/common/files.h"
#include "qbench/common/strings.h"

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
  for (const char* seg : {"weight_quant.", "input_quant.", "input_quant_a.", "input_quant_b.", "output_quant."}) {
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
  std::vector<at::Tensor> data;
  int64_t offset = 0;
  Sha256 hash;
  for (const auto& [n, t] : sorted) {
    const auto* d = by_type(t.scalar_type());
    if (!d) throw DataError(path + ": tensor '" + n + "' has a dtype safetensors export does not handle");
    auto c = t.detach().to(at::kCPU).contiguous();
    const int64_t bytes = c.numel() * d->bytes;
    header[n] = {{"dtype", d->name}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    // Tensor bytes are written in host order; this machine (x86-64/aarch64) is little-endian.
    hash.update(c.data_ptr(), static_cast<std::size_t>(bytes));
    data.push_back(c);
  }
  auto meta = metadata;
  meta[kContentSha256Key] = hash.hex_digest();
  meta[kContentBytesKey] = std::to_string(offset);
  header["__metadata__"] = meta;
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  unsigned char len[8];
  const uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));  // little-endian
  std::vector<ByteSpan> parts = {{len, 8}, {h.data(), h.size()}};
  for (const auto& c : data) parts.push_back({c.data_ptr(), c.nbytes()});
  try {
    atomic_write_file(path, parts, "checkpoint");
  } catch (const DataError&) {
    throw;
  } catch (const Error& e) {
    throw DataError(e.what());
  }
}

namespace {

struct Entry {
  std::string name;
  const DtypeInfo* dtype;
  std::vector<int64_t> shape;
  int64_t begin, end;
};

// Structural parse of the header (no tensor bytes): the entries, or the problem.
std::string parse_header(const std::string& path, const json& header, int64_t data_size, std::vector<Entry>& out,
                         std::map<std::string, std::string>& metadata) {
  if (!header.is_object()) return path + ": malformed safetensors header: not a JSON object";
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      if (v.is_object())
        for (const auto& [k, s] : v.items()) metadata[k] = s.is_string() ? s.get<std::string>() : s.dump();
      continue;
    }
    const std::string where = path + ": tensor '" + name + "'";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets") ||
        !v["dtype"].is_string() || !v["shape"].is_array() || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      return where + ": malformed header entry (needs dtype, shape, data_offsets [begin, end])";
    const auto* d = by_name(v["dtype"].get<std::string>());
    if (!d) return where + ": dtype " + v["dtype"].get<std::string>() + " cannot be handled";
    Entry e{name, d, {}, 0, 0};
    int64_t numel = 1;
    for (const auto& s : v["shape"]) {
      if (!s.is_number_integer() || s.get<int64_t>() < 0 || s.get<int64_t>() > (int64_t(1) << 40))
        return where + ": malformed shape " + v["shape"].dump();
      e.shape.push_back(s.get<int64_t>());
      numel *= e.shape.back();
      if (numel > (int64_t(1) << 40)) return where + ": implausible shape " + v["shape"].dump();
    }
    const auto& off = v["data_offsets"];
    if (!off[0].is_number_integer() || !off[1].is_number_integer()) return where + ": malformed data_offsets " + off.dump();
    e.begin = off[0].get<int64_t>();
    e.end = off[1].get<int64_t>();
    if (e.begin < 0 || e.end < e.begin || e.end > data_size)
      return where + ": data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "] outside the " +
             std::to_string(data_size) + " data bytes (truncated file?)";
    if (e.end - e.begin != numel * d->bytes)
      return where + ": data_offsets span " + std::to_string(e.end - e.begin) + " bytes, but " + d->name + " " +
             shape_str(e.shape) + " needs " + std::to_string(numel * d->bytes);
    out.push_back(std::move(e));
  }
  // The format's rule: the spans tile the data section, in order, with nothing left over.
  std::vector<const Entry*> by_offset;
  for (const auto& e : out) by_offset.push_back(&e);
  std::stable_sort(by_offset.begin(), by_offset.end(),
                   [](const Entry* a, const Entry* b) { return a->begin != b->begin ? a->begin < b->begin : a->end < b->end; });
  int64_t at_byte = 0;
  for (const Entry* e : by_offset) {
    if (e->begin != at_byte)
      return path + ": tensor '" + e->name + "' starts at data byte " + std::to_string(e->begin) +
             (e->begin > at_byte ? ", leaving a gap after byte " : ", overlapping the tensor that ends at byte ") +
             std::to_string(at_byte) + " (damaged header)";
    at_byte = e->end;
  }
  if (at_byte != data_size)
    return path + ": the tensors' bytes end at data byte " + std::to_string(at_byte) + " but the file holds " +
           std::to_string(data_size) + " data bytes (damaged header or trailing bytes)";
  return "";
}

}  // namespace

SafetensorsFile read_safetensors(const std::string& path) {
  SafetensorsFile out;
  auto corrupt = [&](std::string why) {
    out.check.status = Integrity::Corrupt;
    out.check.problem = std::move(why);
    out.tensors.clear();
    return out;
  };
  std::ifstream f(path, std::ios::binary);
  if (!f) throw DataError(path + ": cannot open safetensors file");
  std::error_code ec;
  const auto file_size = static_cast<int64_t>(fs::file_size(path, ec));
  if (ec || file_size < 8) return corrupt(path + ": truncated safetensors file (shorter than its 8-byte header length)");
  unsigned char len[8];
  f.read(reinterpret_cast<char*>(len), 8);
  uint64_t hlen = 0;
  for (int i = 0; i < 8; ++i) hlen |= static_cast<uint64_t>(len[i]) << (8 * i);
  if (hlen > static_cast<uint64_t>(file_size - 8))
    return corrupt(path + ": truncated safetensors file (header length " + std::to_string(hlen) + " exceeds the file)");
  std::string h(hlen, '\0');
  f.read(h.data(), static_cast<std::streamsize>(hlen));
  if (!f) return corrupt(path + ": read failed in the header");
  json header;
  try {
    header = json::parse(h);
  } catch (const json::exception& e) {
    return corrupt(path + ": malformed safetensors header: " + e.what());
  }
  const int64_t data_size = file_size - 8 - static_cast<int64_t>(hlen);
  std::vector<Entry> entries;
  if (auto why = parse_header(path, header, data_size, entries, out.metadata); !why.empty()) return corrupt(why);
  // The spans tile the data section, so reading the tensors in offset order reads it front to
  // back once, straight into the tensors, hashing as it goes.
  std::vector<at::Tensor> tensors(entries.size());
  std::vector<std::size_t> order(entries.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return entries[a].begin < entries[b].begin; });
  Sha256 hash;
  for (const std::size_t i : order) {
    const Entry& e = entries[i];
    tensors[i] = at::empty(e.shape, at::TensorOptions().dtype(e.dtype->type));
    const auto n = static_cast<std::size_t>(e.end - e.begin);
    if (n == 0) continue;
    f.read(static_cast<char*>(tensors[i].data_ptr()), static_cast<std::streamsize>(n));
    if (!f) return corrupt(path + ": read failed in the tensor data (file shrank while being read?)");
    hash.update(tensors[i].data_ptr(), n);
  }
  out.check.sha256 = hash.hex_digest();
  out.check.bytes = data_size;
  const auto sha = out.metadata.find(kContentSha256Key);
  const auto bytes = out.metadata.find(kContentBytesKey);
  if (sha == out.metadata.end() && bytes == out.metadata.end()) {
    out.check.status = Integrity::Unhashed;
  } else {
    if (sha == out.metadata.end() || bytes == out.metadata.end())
      return corrupt(path + ": __metadata__ has only one of " + kContentSha256Key + " and " + kContentBytesKey +
                     " (damaged header)");
    if (bytes->second != std::to_string(data_size))
      return corrupt(path + ": holds " + std::to_string(data_size) + " tensor bytes, its header says " + bytes->second +
                     " (truncated or damaged file)");
    if (sha->second != out.check.sha256)
      return corrupt(path + ": content hash mismatch: the tensor bytes hash to " + out.check.sha256 +
                     ", the header says " + sha->second + " (damaged tensor data)");
    out.check.status = Integrity::Verified;
  }
  for (std::size_t i = 0; i < entries.size(); ++i) out.tensors.emplace_back(entries[i].name, std::move(tensors[i]));
  return out;
}

NamedTensors load_safetensors(const std::string& path, std::map<std::string, std::string>* metadata) {
  auto file = read_safetensors(path);
  if (file.check.status == Integrity::Corrupt) throw DataError(file.check.problem);
  if (metadata)
    for (auto& [k, v] : file.metadata) (*metadata)[k] = v;
  return std::move(file.tensors);
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
  return import_weights(model, load_safetensors(path), path);
}

ImportResult import_weights(quant::QuantModel& model, const NamedTensors& tensors, const std::string& path) {
  std::map<std::string, at::Tensor> file;
  for (auto& [n, t] : tensors) file[strip_prefix(n)] = t;
  ImportResult r;
  std::set<std::string> used;
  // Every tensor is checked before the first is copied: a file that does not fit leaves the
  // model as it was.
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;
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
    copies.emplace_back(dst, src);
    used.insert(it->first);
  }
  for (const auto& [n, t] : file)
    if (!used.count(n)) throw DataError(path + ": tensor '" + n + "' is not part of the model (wrong architecture?)");
  c10::NoGradGuard ng;
  for (auto& [dst, src] : copies) {
    dst.copy_(src);
    ++r.tensors;
  }
  return r;
}

}  // namespace qbench::models
