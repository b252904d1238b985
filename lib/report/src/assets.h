#pragma once
// Files embedded into the report library at build time (see tools/embed_assets.cpp): the
// vendored charting libraries the HTML report inlines.
#include <string_view>
#include <vector>

namespace qbench::report {

struct EmbeddedAsset {
  std::string_view name;  ///< file name, e.g. "vega.min.js"
  std::string_view data;
};
/// In the order the HTML page loads them (vega, vega-lite, vega-embed).
const std::vector<EmbeddedAsset>& embedded_assets();

}  // namespace qbench::report
