// The exporter's graph as an ONNX ModelProto (opset 13), checked by libonnx's checker and shape
// inference, and an ONNX file's operator census. The only file of lib/export that sees protobuf.
#include <ATen/ATen.h>
#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <fstream>
#include <set>
#include <sstream>

#include "qbench/common/files.h"
#include "qbench/export/onnx_export.h"

namespace qbench::exporter {

namespace op = ::onnx;

namespace {

constexpr int64_t kOpset = 13;
constexpr int64_t kIrVersion = 7;  // the IR of opset 13 (ONNX 1.8)

int onnx_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return op::TensorProto::FLOAT;
    case at::kByte:
      return op::TensorProto::UINT8;
    case at::kChar:
      return op::TensorProto::INT8;
    case at::kInt:
      return op::TensorProto::INT32;
    case at::kLong:
      return op::TensorProto::INT64;
    default:
      throw ExportError(std::string("export: internal: initializer of type ") + c10::toString(t));
  }
}

void fill_tensor(op::TensorProto* p, const std::string& name, const at::Tensor& t0) {
  at::Tensor t = t0.cpu().contiguous();
  p->set_name(name);
  p->set_data_type(onnx_dtype(t.scalar_type()));
  for (auto d : t.sizes()) p->add_dims(d);
  p->set_raw_data(std::string(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size()));
}

void fill_value_info(op::ValueInfoProto* v, const std::string& name, const std::vector<int64_t>& shape) {
  v->set_name(name);
  auto* tt = v->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(op::TensorProto::FLOAT);
  auto* sh = tt->mutable_shape();
  for (size_t i = 0; i < shape.size(); ++i) {
    auto* d = sh->add_dim();
    if (i == 0)
      d->set_dim_param("N");
    else
      d->set_dim_value(shape[i]);
  }
}

void fill_attr(op::AttributeProto* a, const std::string& name, const XAttr& x) {
  a->set_name(name);
  switch (x.kind) {
    case XAttr::Kind::Int:
      a->set_type(op::AttributeProto::INT);
      a->set_i(x.i);
      break;
    case XAttr::Kind::Float:
      a->set_type(op::AttributeProto::FLOAT);
      a->set_f(x.f);
      break;
    case XAttr::Kind::Ints:
      a->set_type(op::AttributeProto::INTS);
      for (auto v : x.ints) a->add_ints(v);
      break;
    case XAttr::Kind::Floats:
      a->set_type(op::AttributeProto::FLOATS);
      for (auto v : x.floats) a->add_floats(v);
      break;
    case XAttr::Kind::String:
      a->set_type(op::AttributeProto::STRING);
      a->set_s(x.s);
      break;
  }
}

op::ModelProto to_proto(const XGraph& g, const std::map<std::string, std::string>& metadata) {
  op::ModelProto m;
  m.set_ir_version(kIrVersion);
  m.set_producer_name("qbench");
  m.set_producer_version("0.1");
  auto* opset = m.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOpset);
  for (const auto& [k, v] : metadata) {
    auto* p = m.add_metadata_props();
    p->set_key(k);
    p->set_value(v);
  }
  auto* gr = m.mutable_graph();
  gr->set_name(g.name);
  fill_value_info(gr->add_input(), g.input, g.input_shape);
  fill_value_info(gr->add_output(), g.output, g.output_shape);
  for (const auto& [name, shape] : g.extra_outputs) fill_value_info(gr->add_output(), name, shape);
  for (const auto& [name, t] : g.initializers) fill_tensor(gr->add_initializer(), name, t);
  for (const auto& n : g.nodes) {
    auto* p = gr->add_node();
    p->set_name(n.name);
    p->set_op_type(n.op);
    for (const auto& i : n.inputs) p->add_input(i);
    for (const auto& o : n.outputs) p->add_output(o);
    for (const auto& [k, a] : n.attrs) fill_attr(p->add_attribute(), k, a);
  }
  return m;
}

}  // namespace

void write_onnx(const XGraph& g, const std::string& path, const std::map<std::string, std::string>& metadata) {
  op::ModelProto m = to_proto(g, metadata);
  try {
    op::checker::check_model(m);
  } catch (const std::exception& e) {
    throw ExportError("export: the ONNX checker rejects the exported graph: " + std::string(e.what()));
  }
  try {
    op::ModelProto inferred = m;
    op::shape_inference::InferShapes(inferred, op::OpSchemaRegistry::Instance(),
                                     op::ShapeInferenceOptions(/*check_type=*/true, /*error_mode=*/1,
                                                               /*enable_data_propagation=*/false));
  } catch (const std::exception& e) {
    throw ExportError("export: ONNX shape inference fails on the exported graph: " + std::string(e.what()));
  }
  std::string bytes;
  if (!m.SerializeToString(&bytes)) throw ExportError("export: could not serialize the ONNX model");
  atomic_write_file(path, bytes);
}

OpCensus census(const std::string& onnx_path) {
  std::ifstream f(onnx_path, std::ios::binary);
  if (!f) throw DataError(onnx_path + ": cannot open the optimized model");
  std::stringstream ss;
  ss << f.rdbuf();
  op::ModelProto m;
  if (!m.ParseFromString(ss.str())) throw DataError(onnx_path + ": not an ONNX model");
  static const std::set<std::string> int8_ops = {"QLinearConv",   "QGemm",         "QLinearMatMul",
                                                 "ConvInteger",   "MatMulInteger", "MatMulIntegerToFloat",
                                                 "DynamicQuantizeMatMul", "NhwcQLinearConv"};
  static const std::set<std::string> float_ops = {"Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul"};
  OpCensus c;
  for (const auto& n : m.graph().node()) {
    const std::string key = n.domain().empty() || n.domain() == "ai.onnx" ? n.op_type() : n.domain() + "." + n.op_type();
    ++c.ops[key];
    if (int8_ops.count(n.op_type()))
      ++c.int8_compute;
    else if (float_ops.count(n.op_type()))
      ++c.float_compute;
  }
  return c;
}

}  // namespace qbench::exporter
