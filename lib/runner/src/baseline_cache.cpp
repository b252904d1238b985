#include "qbench/runner/baseline_cache.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <vector>

#include "qbench/common/errors.h"
#include "qbench/common/progress.h"
#include "qbench/models/safetensors.h"
#include "qbench/train/train.h"

namespace qbench::runner {
namespace fs = std::filesystem;

namespace {

std::optional<FileLock> take_lock(const std::string& path, const CacheLog& note) {
  const std::string lock = path + ".lock";
  try {
    return FileLock::acquire(
        lock,
        [&] {
          if (note)
            note("waiting for another qbench process that is building this baseline (lock " + lock + ")");
        },
        [] { check_interrupt(); }, 100);
  } catch (const Interrupted&) {
    throw;
  } catch (const Error& e) {
    // A cache this process cannot write (e.g. shared read-only): reading a verified checkpoint
    // needs no lock; building one would fail at its write anyway, naming the file.
    if (note) note(std::string("going on without the baseline's lock: ") + e.what());
    return std::nullopt;
  }
}

// epoch_N.pt -> N; 0 for any other name.
int epoch_of(const std::string& name) {
  if (name.size() < 10 || name.compare(0, 6, "epoch_") != 0 || name.compare(name.size() - 3, 3, ".pt") != 0) return 0;
  const std::string digits = name.substr(6, name.size() - 9);
  if (digits.empty() || digits.size() > 6 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return 0;
  return std::stoi(digits);
}

}  // namespace

BaselineCheckpoint::BaselineCheckpoint(std::string path, CacheLog note, CacheLog warn)
    : path_(std::move(path)), note_(std::move(note)), warn_(std::move(warn)), lock_(take_lock(path_, note_)) {
  remove_stale_temporaries(path_);
}

bool BaselineCheckpoint::load_into(quant::QuantModel& model) {
  if (!fs::exists(path_)) return false;
  models::SafetensorsFile file;
  try {
    file = models::read_safetensors(path_);
  } catch (const DataError& e) {  // cannot be opened: as unusable as a damaged one
    file.check.status = Integrity::Corrupt;
    file.check.problem = e.what();
  }
  std::string problem = file.check.problem;
  if (file.check.status != Integrity::Corrupt) {
    try {
      models::import_weights(model, file.tensors, path_);  // all or nothing: a misfit leaves the model as it was
    } catch (const DataError& e) {
      problem = std::string(e.what()) + " (the checkpoint does not fit the model)";
    }
  }
  if (!problem.empty()) {
    const std::string aside = move_aside(path_);
    if (warn_)
      warn_("cached checkpoint is damaged: " + problem + "; moved aside to " + aside +
            " (kept), the baseline is built again");
    return false;
  }
  if (file.check.status == Integrity::Unhashed) {
    // Written before checkpoints carried a hash: structurally sound and it fits, so it is used;
    // from now on it is verified like any other.
    try {
      models::save_safetensors(path_, file.tensors, file.metadata);
      if (note_)
        note_("cached checkpoint " + path_ + " carried no content hash (written before hashes): accepted after its "
              "structural check, hash written (sha256 " + file.check.sha256 + ")");
    } catch (const Error& e) {
      if (warn_) warn_("cached checkpoint " + path_ + " carries no content hash and writing it failed: " + e.what());
    }
  }
  return true;
}

int qat_resume_epoch(const std::string& dir, const CacheLog& note, const CacheLog& warn) {
  if (!fs::is_directory(dir)) return 0;
  remove_stale_temporaries_in(dir);
  std::vector<int> epochs;
  for (const auto& f : fs::directory_iterator(dir))
    if (const int n = epoch_of(f.path().filename().string()); n > 0) epochs.push_back(n);
  std::sort(epochs.rbegin(), epochs.rend());
  for (const int n : epochs) {
    const std::string path = (fs::path(dir) / ("epoch_" + std::to_string(n) + ".pt")).string();
    IntegrityCheck c;
    try {
      c = train::verify_checkpoint(path);
    } catch (const DataError& e) {
      c.status = Integrity::Corrupt;
      c.problem = e.what();
    }
    if (c.status == Integrity::Verified) return n;
    if (c.status == Integrity::Unhashed) {
      try {
        train::add_checkpoint_hash(path);
        if (note)
          note("QAT checkpoint " + path + " carried no content hash (written before hashes): accepted after its "
               "structural check, hash written (sha256 " + c.sha256 + ")");
      } catch (const Error& e) {
        if (warn) warn("QAT checkpoint " + path + " carries no content hash and writing it failed: " + e.what());
      }
      return n;
    }
    const std::string aside = move_aside(path);
    if (warn)
      warn("QAT checkpoint is damaged: " + c.problem + "; moved aside to " + aside + " (kept), " +
           (n == epochs.back() ? std::string("fine-tuning starts again from the baseline")
                               : std::string("trying the previous epoch's")));
  }
  return 0;
}

void remove_qat_checkpoints(const std::string& dir) {
  if (!fs::is_directory(dir)) return;
  std::error_code ec;
  std::vector<fs::path> done;
  for (const auto& f : fs::directory_iterator(dir))
    if (epoch_of(f.path().filename().string()) > 0) done.push_back(f.path());
  for (const auto& p : done) fs::remove(p, ec);
  remove_stale_temporaries_in(dir);
  if (fs::is_empty(dir, ec)) fs::remove(dir, ec);
}

}  // namespace qbench::runner
