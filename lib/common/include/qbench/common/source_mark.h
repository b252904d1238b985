#pragma once

namespace qbench {

/// A 1-based line/column in an input file (0 = unknown, e.g. something built in code).
struct SourceMark {
  int line = 0;
  int column = 0;
};

}  // namespace qbench
