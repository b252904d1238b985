#pragma once
// The cache a cell reads back: FP32 baseline checkpoints (results/cache/baselines/<key>.safetensors)
// and QAT epoch checkpoints (results/cache/cells/<key>/epoch_N.pt). Every file is written
// atomically with its content hash (models::save_safetensors, train::save_checkpoint) and verified
// on every load; a damaged one is moved aside (kept as <file>.corrupt), a warning names it, and
// what it held is rebuilt. One process builds a baseline at a time on a machine: the others wait
// on its lock and then reuse its checkpoint.
#include <functional>
#include <optional>
#include <string>

#include "qbench/common/files.h"
#include "qbench/quant/qmodules.h"

namespace qbench::runner {

/// Where notes and warnings go (the runner logs them).
using CacheLog = std::function<void(const std::string&)>;

/// The cached checkpoint of one FP32 baseline, and the right to build it. The constructor takes
/// the baseline's lock (`<checkpoint>.lock`, flock), waiting while another process holds it (it
/// says so once through `note`, and stops with qbench::Interrupted on Ctrl-C), then removes the
/// temporaries killed writers left. The lock is held until the object goes, so whoever finds no
/// usable checkpoint trains and writes the baseline before anyone else looks again. Where the lock
/// file cannot be created (a read-only cache) it goes on without the lock, with a note.
class BaselineCheckpoint {
 public:
  BaselineCheckpoint(std::string path, CacheLog note, CacheLog warn);

  /// Loads the cached checkpoint into `model` and returns true when there is one to use:
  /// Verified (its hash and length match): loaded. Unhashed (written before checkpoints carried a
  /// hash): checked structurally, loaded, noted, and rewritten with its hash. Corrupt, or tensors
  /// that do not fit the model: moved aside to <path>.corrupt (kept; .corrupt.1 etc. when taken),
  /// a warning names both files, and false is returned with the model untouched, for the caller to
  /// build the baseline (and write it to path()) while this object still holds the lock. False
  /// when there is no checkpoint.
  bool load_into(quant::QuantModel& model);

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  CacheLog note_, warn_;
  std::optional<FileLock> lock_;  ///< empty only when the lock file cannot be created (read-only cache)
};

/// The epoch a QAT cell resumes after: the highest N whose `dir`/epoch_N.pt verifies
/// (train::verify_checkpoint), 0 when there is none (the cell starts from its baseline). A damaged
/// checkpoint is moved aside (kept as .corrupt; a warning names it) and the next lower one, if
/// any, is tried; an Unhashed one (written before checkpoints carried a hash) is accepted with a
/// note and rewritten with its hash. Temporaries of dead writers are removed.
int qat_resume_epoch(const std::string& dir, const CacheLog& note, const CacheLog& warn);

/// After a finished QAT cell: removes its epoch checkpoints and dead writers' temporaries, and the
/// folder once it is empty; a .corrupt file stays (and so does the folder holding it).
void remove_qat_checkpoints(const std::string& dir);

}  // namespace qbench::runner
