#pragma once
// A registry per kind of thing (algorithm, architecture, dataset, profile, observer, QAT method,
// report format and table). Entries are added by explicit registration functions, never by static
// initialisers (the linker drops those from static libraries), so the order is deterministic and
// `qbench list` prints them in registration order.
//
// Each registry's list of registration functions is generated at configure time from the
// `qbench_registry_entry(<table> <source>)` lines of its component's CMakeLists.txt
// (lib/common/cmake/registry.cmake): adding an entry is its own source file, which defines
// `void register_<file name>(Registry<Entry>&)`, plus that one line. The generated file defines
// the function that calls them all in order (`fill_archs`, `fill_observers`, ...), which the
// component's registry calls once.
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "qbench/common/errors.h"
#include "qbench/common/strings.h"

namespace qbench {

template <typename Entry>
class Registry {
 public:
  explicit Registry(std::string kind) : kind_(std::move(kind)) {}
  /// A registry filled by `fill`: a component's generated table of registration functions
  /// (`fill_archs`, `fill_observers`, ...), run once when its registry is first used.
  Registry(std::string kind, void (*fill)(Registry&)) : kind_(std::move(kind)) { fill(*this); }

  void add(const std::string& name, Entry entry) {
    if (index_.count(name)) throw Error(kind_ + " '" + name + "' registered twice");
    index_[name] = entries_.size();
    entries_.emplace_back(name, std::move(entry));
  }
  bool contains(const std::string& name) const { return index_.count(name) > 0; }
  const Entry& get(const std::string& name) const {
    auto it = index_.find(name);
    if (it == index_.end())
      throw UnknownNameError("unknown " + kind_ + " '" + name + "'" + did_you_mean(name, names()));
    return entries_[it->second].second;
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& e : entries_) out.push_back(e.first);
    return out;
  }
  const std::vector<std::pair<std::string, Entry>>& entries() const { return entries_; }
  const std::string& kind() const { return kind_; }

 private:
  std::string kind_;
  std::map<std::string, std::size_t> index_;
  std::vector<std::pair<std::string, Entry>> entries_;
};

}  // namespace qbench
