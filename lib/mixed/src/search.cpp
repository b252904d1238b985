#include "qbench/mixed/search.h"

#include <glpk.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <sstream>

#include "qbench/common/errors.h"

namespace qbench::mixed {

namespace {

// A budget equal to an allocation's own cost must admit it: the sums are of integers times
// widths, computed in another order here than in cost_of, so the bound gets a relative slack far
// below any width step.
constexpr double kSlack = 1e-9;
double bound(double v) { return v + kSlack * std::max(1.0, std::fabs(v)); }

double bops_at_w8a8(const std::vector<LayerChoices>& layers) {
  double b = 0;
  for (const auto& l : layers) b += static_cast<double>(l.macs) * 64.0;
  return b;
}

bool within(const Cost& c, const Budget& b) {
  if (b.size_kb && c.size_kb > bound(*b.size_kb)) return false;
  if (b.bops_ratio && c.bops_ratio > bound(*b.bops_ratio)) return false;
  if (b.avg_w_bits && c.avg_w_bits > bound(*b.avg_w_bits)) return false;
  if (b.avg_a_bits && c.avg_a_bits > bound(*b.avg_a_bits)) return false;
  if (b.latency_ms && c.latency_ms > bound(*b.latency_ms)) return false;
  return true;
}

std::string fmt(double v) {
  std::ostringstream os;
  os.precision(6);
  os << v;
  return os.str();
}

std::string reachable(const std::vector<LayerChoices>& layers, const Budget& b) {
  const Cost lo = lowest_cost(layers), hi = highest_cost(layers);
  std::vector<std::string> parts;
  auto add = [&](const char* key, const std::optional<double>& v, double l, double h) {
    if (v) parts.push_back(std::string(key) + " " + fmt(*v) + " (reachable " + fmt(l) + " .. " + fmt(h) + ")");
  };
  add("size_kb", b.size_kb, lo.size_kb, hi.size_kb);
  add("bops_ratio", b.bops_ratio, lo.bops_ratio, hi.bops_ratio);
  add("avg_w_bits", b.avg_w_bits, lo.avg_w_bits, hi.avg_w_bits);
  add("avg_a_bits", b.avg_a_bits, lo.avg_a_bits, hi.avg_a_bits);
  add("latency_ms", b.latency_ms, lo.latency_ms, hi.latency_ms);
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? ", " : "") + parts[i];
  return out;
}

/// Index of the activation width `bits` in a layer's options.
int a_index(const LayerChoices& l, int bits) {
  return static_cast<int>(std::find(l.a_bits.begin(), l.a_bits.end(), bits) - l.a_bits.begin());
}

struct GlpProblem {
  glp_prob* p = glp_create_prob();
  ~GlpProblem() { glp_delete_prob(p); }
};

}  // namespace

Budget budget_from(const std::map<std::string, double>& values) {
  Budget b;
  const std::map<std::string, std::optional<double> Budget::*> slot = {
      {"size_kb", &Budget::size_kb},       {"bops_ratio", &Budget::bops_ratio}, {"avg_w_bits", &Budget::avg_w_bits},
      {"avg_a_bits", &Budget::avg_a_bits}, {"latency_ms", &Budget::latency_ms}};
  for (const auto& [k, v] : values) {
    auto it = slot.find(k);
    if (it == slot.end()) throw Error("mixed precision: unknown budget '" + k + "'");
    b.*(it->second) = v;
  }
  return b;
}

void validate(const std::vector<LayerChoices>& layers) {
  if (layers.empty()) throw Error("mixed precision: the model has no quantized layers");
  std::map<int, const LayerChoices*> group_first;
  for (const auto& l : layers) {
    if (l.w_bits.empty() || l.a_bits.empty()) throw Error("mixed precision: layer " + l.name + " has no width to choose");
    if (l.w_sens.size() != l.w_bits.size() || l.a_sens.size() != l.a_bits.size())
      throw Error("mixed precision: layer " + l.name + ": one sensitivity per width expected");
    if (!l.latency_ms.empty() && l.latency_ms.size() != l.w_bits.size() * l.a_bits.size())
      throw Error("mixed precision: layer " + l.name + ": one latency per width pair expected");
    if (l.a_group >= 0) {
      auto [it, fresh] = group_first.emplace(l.a_group, &l);
      if (!fresh && it->second->a_bits != l.a_bits)
        throw Error("mixed precision: layers " + it->second->name + " and " + l.name +
                    " read one activation but allow different widths");
    }
  }
}

Cost cost_of(const std::vector<LayerChoices>& layers, const std::vector<int>& w_bits, const std::vector<int>& a_bits) {
  Cost c;
  double params = 0, elems = 0, wsum = 0, asum = 0;
  for (std::size_t k = 0; k < layers.size(); ++k) {
    const auto& l = layers[k];
    const int i = static_cast<int>(std::find(l.w_bits.begin(), l.w_bits.end(), w_bits[k]) - l.w_bits.begin());
    const int j = a_index(l, a_bits[k]);
    if (i >= static_cast<int>(l.w_bits.size()) || j >= static_cast<int>(l.a_bits.size()))
      throw Error("mixed precision: layer " + l.name + " cannot take w" + std::to_string(w_bits[k]) + "a" +
                  std::to_string(a_bits[k]));
    c.sensitivity += l.w_sens[i] + l.a_sens[j];
    c.size_kb += static_cast<double>(l.params) * w_bits[k] / 8.0 / 1024.0;
    c.bops += static_cast<double>(l.macs) * w_bits[k] * a_bits[k];
    params += static_cast<double>(l.params);
    wsum += static_cast<double>(l.params) * w_bits[k];
    elems += static_cast<double>(l.act_elems);
    asum += static_cast<double>(l.act_elems) * a_bits[k];
    if (!l.latency_ms.empty()) c.latency_ms += l.latency_ms[i * l.a_bits.size() + j];
  }
  const double ref = bops_at_w8a8(layers);
  c.bops_ratio = ref > 0 ? c.bops / ref : 0;
  c.avg_w_bits = params > 0 ? wsum / params : 0;
  c.avg_a_bits = elems > 0 ? asum / elems : 0;
  return c;
}

namespace {
Cost extreme_cost(const std::vector<LayerChoices>& layers, bool highest) {
  std::vector<int> w, a;
  for (const auto& l : layers) {
    w.push_back(highest ? *std::max_element(l.w_bits.begin(), l.w_bits.end())
                        : *std::min_element(l.w_bits.begin(), l.w_bits.end()));
    a.push_back(highest ? *std::max_element(l.a_bits.begin(), l.a_bits.end())
                        : *std::min_element(l.a_bits.begin(), l.a_bits.end()));
  }
  Cost c = cost_of(layers, w, a);
  if (!layers.front().latency_ms.empty()) {  // latency need not be monotone in the widths
    c.latency_ms = 0;
    for (const auto& l : layers)
      c.latency_ms += highest ? *std::max_element(l.latency_ms.begin(), l.latency_ms.end())
                              : *std::min_element(l.latency_ms.begin(), l.latency_ms.end());
  }
  return c;
}
}  // namespace

Cost lowest_cost(const std::vector<LayerChoices>& layers) { return extreme_cost(layers, false); }
Cost highest_cost(const std::vector<LayerChoices>& layers) { return extreme_cost(layers, true); }

Allocation solve(const std::vector<LayerChoices>& layers, const Budget& budget) {
  validate(layers);
  if (budget.latency_ms)
    for (const auto& l : layers)
      if (l.latency_ms.empty()) throw Error("mixed precision: a latency budget needs a latency model of every layer");
  glp_term_out(GLP_OFF);
  GlpProblem gp;
  glp_prob* p = gp.p;
  glp_set_obj_dir(p, GLP_MIN);
  // Columns: x[k][i][j] = layer k takes w_bits[i], a_bits[j].
  std::vector<std::vector<int>> first_col(layers.size());
  double scale = 0;
  for (const auto& l : layers) {
    for (double s : l.w_sens) scale = std::max(scale, std::fabs(s));
    for (double s : l.a_sens) scale = std::max(scale, std::fabs(s));
  }
  if (scale == 0) scale = 1;  // objective normalised to [-2, 2]: GLPK's tolerances are absolute
  int ncols = 0;
  std::vector<int> col_layer, col_w, col_a;
  for (std::size_t k = 0; k < layers.size(); ++k) {
    const auto& l = layers[k];
    const int n = static_cast<int>(l.w_bits.size() * l.a_bits.size());
    glp_add_cols(p, n);
    for (int i = 0; i < static_cast<int>(l.w_bits.size()); ++i)
      for (int j = 0; j < static_cast<int>(l.a_bits.size()); ++j) {
        const int c = ++ncols;
        glp_set_col_kind(p, c, GLP_BV);
        glp_set_obj_coef(p, c, (l.w_sens[i] + l.a_sens[j]) / scale);
        col_layer.push_back(static_cast<int>(k));
        col_w.push_back(i);
        col_a.push_back(j);
      }
  }
  std::vector<int> ia{0}, ja{0};
  std::vector<double> ar{0};
  auto add_row = [&](const std::function<double(int)>& coef, int type, double lo, double hi) {
    const int r = glp_add_rows(p, 1);
    glp_set_row_bnds(p, r, type, lo, hi);
    for (int c = 1; c <= ncols; ++c) {
      const double v = coef(c - 1);
      if (v == 0) continue;
      ia.push_back(r);
      ja.push_back(c);
      ar.push_back(v);
    }
  };
  for (std::size_t k = 0; k < layers.size(); ++k)
    add_row([&](int c) { return col_layer[c] == static_cast<int>(k) ? 1.0 : 0.0; }, GLP_FX, 1, 1);
  // One activation width per shared edge: the group's first layer's choice, for each width.
  std::map<int, int> group_first;
  for (std::size_t k = 0; k < layers.size(); ++k) {
    if (layers[k].a_group < 0) continue;
    auto [it, fresh] = group_first.emplace(layers[k].a_group, static_cast<int>(k));
    if (fresh) continue;
    const int f = it->second;
    for (int j = 0; j < static_cast<int>(layers[k].a_bits.size()); ++j)
      add_row(
          [&](int c) {
            if (col_a[c] != j) return 0.0;
            if (col_layer[c] == static_cast<int>(k)) return 1.0;
            if (col_layer[c] == f) return -1.0;
            return 0.0;
          },
          GLP_FX, 0, 0);
  }
  auto w_of = [&](int c) { return static_cast<double>(layers[col_layer[c]].w_bits[col_w[c]]); };
  auto a_of = [&](int c) { return static_cast<double>(layers[col_layer[c]].a_bits[col_a[c]]); };
  double params = 0, elems = 0;
  for (const auto& l : layers) {
    params += static_cast<double>(l.params);
    elems += static_cast<double>(l.act_elems);
  }
  // Each budget row in the units that keep its coefficients integers (bits, bit-MACs).
  if (budget.size_kb)
    add_row([&](int c) { return static_cast<double>(layers[col_layer[c]].params) * w_of(c); }, GLP_UP, 0,
            bound(*budget.size_kb * 8.0 * 1024.0));
  if (budget.bops_ratio)
    add_row([&](int c) { return static_cast<double>(layers[col_layer[c]].macs) * w_of(c) * a_of(c); }, GLP_UP, 0,
            bound(*budget.bops_ratio * bops_at_w8a8(layers)));
  if (budget.avg_w_bits)
    add_row([&](int c) { return static_cast<double>(layers[col_layer[c]].params) * w_of(c); }, GLP_UP, 0,
            bound(*budget.avg_w_bits * params));
  if (budget.avg_a_bits)
    add_row([&](int c) { return static_cast<double>(layers[col_layer[c]].act_elems) * a_of(c); }, GLP_UP, 0,
            bound(*budget.avg_a_bits * elems));
  if (budget.latency_ms)
    add_row(
        [&](int c) {
          const auto& l = layers[col_layer[c]];
          return l.latency_ms[col_w[c] * l.a_bits.size() + col_a[c]];
        },
        GLP_UP, 0, bound(*budget.latency_ms));
  glp_load_matrix(p, static_cast<int>(ia.size()) - 1, ia.data(), ja.data(), ar.data());
  glp_iocp parm;
  glp_init_iocp(&parm);
  parm.presolve = GLP_ON;
  parm.msg_lev = GLP_MSG_OFF;
  parm.mip_gap = 0.0;
  const int rc = glp_intopt(p, &parm);
  const int status = glp_mip_status(p);
  if (rc == GLP_ENOPFS || rc == GLP_ENODFS || status == GLP_NOFEAS)
    throw Error("mixed precision: no allocation meets the budget: " + reachable(layers, budget));
  if (rc != 0 || status != GLP_OPT)
    throw Error("mixed precision: GLPK failed (glp_intopt " + std::to_string(rc) + ", status " +
                std::to_string(status) + ")");
  Allocation a;
  a.w_bits.assign(layers.size(), 0);
  a.a_bits.assign(layers.size(), 0);
  for (int c = 1; c <= ncols; ++c)
    if (glp_mip_col_val(p, c) > 0.5) {
      a.w_bits[col_layer[c - 1]] = layers[col_layer[c - 1]].w_bits[col_w[c - 1]];
      a.a_bits[col_layer[c - 1]] = layers[col_layer[c - 1]].a_bits[col_a[c - 1]];
    }
  a.cost = cost_of(layers, a.w_bits, a.a_bits);
  if (!within(a.cost, budget)) throw Error("mixed precision: GLPK's allocation breaks the budget (a solver tolerance)");
  return a;
}

std::optional<Allocation> brute_force(const std::vector<LayerChoices>& layers, const Budget& budget) {
  validate(layers);
  std::optional<Allocation> best;
  std::vector<int> w(layers.size()), a(layers.size());
  std::function<void(std::size_t)> rec = [&](std::size_t k) {
    if (k == layers.size()) {
      // Shared edges: every member of a group at one width.
      std::map<int, int> seen;
      for (std::size_t m = 0; m < layers.size(); ++m)
        if (layers[m].a_group >= 0) {
          auto [it, fresh] = seen.emplace(layers[m].a_group, a[m]);
          if (!fresh && it->second != a[m]) return;
        }
      Cost c = cost_of(layers, w, a);
      if (!within(c, budget)) return;
      if (!best || c.sensitivity < best->cost.sensitivity) best = Allocation{w, a, c};
      return;
    }
    for (int wb : layers[k].w_bits)
      for (int ab : layers[k].a_bits) {
        w[k] = wb;
        a[k] = ab;
        rec(k + 1);
      }
  };
  rec(0);
  return best;
}

std::vector<FrontPoint> pareto_front(const std::vector<LayerChoices>& layers, const std::string& dimension, int points) {
  if (dimension != "size_kb" && dimension != "bops_ratio")
    throw Error("mixed precision: no Pareto front along '" + dimension + "' (size_kb or bops_ratio)");
  const Cost lo = lowest_cost(layers), hi = highest_cost(layers);
  const double l = dimension == "size_kb" ? lo.size_kb : lo.bops_ratio;
  const double h = dimension == "size_kb" ? hi.size_kb : hi.bops_ratio;
  std::vector<FrontPoint> front;
  for (int i = 0; i < points; ++i) {
    const double v = points == 1 ? h : l + (h - l) * i / (points - 1);
    Budget b;
    (dimension == "size_kb" ? b.size_kb : b.bops_ratio) = v;
    front.push_back({v, solve(layers, b)});
  }
  return front;
}

}  // namespace qbench::mixed
