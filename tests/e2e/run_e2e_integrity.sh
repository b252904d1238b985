#!/usr/bin/env bash
# Integrity end to end through the built binary: bad data and a damaged cache are caught before
# any work, never per cell, and never loaded silently.
#  - a missing data root, each kind of damaged IDX file, a CIFAR batch of the wrong length, an image
#    folder with an empty class or a zero-byte image, a weights file that fails verification: exit
#    2 with the file and the reason, the store byte for byte unchanged (or never created);
#  - a cached baseline with flipped tensor bytes, truncated, or with a damaged header: the run
#    succeeds with a warning naming it, the damaged file is kept as .corrupt, the rebuilt one
#    verifies and gives the same top-1;
#  - a checkpoint write killed half way or before its rename (QBENCH_TEST_FAULT) leaves the old file
#    or none, never a damaged one that loads; the next run recovers;
#  - two concurrent runs of one matrix on one store and cache train each baseline once.
# usage: run_e2e_integrity.sh QBENCH_BINARY E2E_DIR WORK_DIR
set -u
QB=$1; HERE=$2; WORK=$3
DB=$WORK/data.db; CACHE=$WORK/cache_data
source "$(dirname "$0")/harness.sh"
D=$HERE/integrity_data.yaml
S=$HERE/integrity_synth.yaml
FM=/usr/share/datasets/fashion-mnist

# sha256 of the store's files; a missing file reads as such, so "created" shows as a change.
store_sum() { sha256sum "$DB" "$DB-wal" 2>&1; }

# expect_input_error WHAT EXPECTED_MESSAGE RUN_ARGS...: exit 2, that one error line, store untouched.
expect_input_error() {
  local what=$1 want=$2; shift 2
  local before err rc
  before=$(store_sum)
  err=$(run "$@" 2>&1 >/dev/null); rc=$?
  check "$what: exits 2 ($rc)" test $rc -eq 2
  check "$what: the message names the file and the reason" test "$err" = "qbench: error: $want"
  [ "$err" = "qbench: error: $want" ] || printf '      got:  %s\n      want: qbench: error: %s\n' "$err" "$want"
  check "$what: the store is byte for byte unchanged" test "$(store_sum)" = "$before"
}

# Big-endian 32-bit integer as 4 raw bytes.
be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }
# put_bytes FILE OFFSET 'printf-escaped bytes': overwrite in place.
put_bytes() { printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }
flip_byte() {  # FILE OFFSET: xor one byte with 0xff
  local b; b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  put_bytes "$1" "$2" "\\x$(printf %02x $((b ^ 255)))"
}

# ---- fixtures ------------------------------------------------------------------------------------
# A Fashion-MNIST root in the exact IDX format (plain files): the first 512 training and 256 test
# images of the real data set.
IDX=$WORK/fmnist
mkdir -p "$IDX"
for s in train:512 t10k:256; do
  p=${s%%:*}; n=${s##*:}
  { printf '\x00\x00\x08\x03'; be32 "$n"; be32 28; be32 28; zcat "$FM/$p-images-idx3-ubyte.gz" | tail -c +17 | head -c $((n * 784)); } > "$IDX/$p-images-idx3-ubyte"
  { printf '\x00\x00\x08\x01'; be32 "$n"; zcat "$FM/$p-labels-idx1-ubyte.gz" | tail -c +9 | head -c "$n"; } > "$IDX/$p-labels-idx1-ubyte"
done
check "fixture: 512 training images of 28x28 after a 16-byte header" test "$(stat -c %s "$IDX/train-images-idx3-ubyte")" = $((16 + 512 * 784))
# CIFAR-10 binary version: five training batches and a test batch of two records each.
CIFAR=$WORK/cifar
mkdir -p "$CIFAR/cifar-10-batches-bin"
for f in data_batch_1 data_batch_2 data_batch_3 data_batch_4 data_batch_5 test_batch; do
  head -c $((2 * 3073)) /dev/zero > "$CIFAR/cifar-10-batches-bin/$f.bin"
done
# An image folder of 4x4 PPM images, two classes in each split.
IMG=$WORK/images
for sp in train val; do
  for c in c0 c1; do
    mkdir -p "$IMG/$sp/$c"
    for i in 0 1; do { printf 'P6\n4 4\n255\n'; head -c 48 /dev/urandom; } > "$IMG/$sp/$c/img$i.ppm"; done
  done
done

# ---- a missing data root --------------------------------------------------------------------------
expect_input_error "missing --data-root on a fresh store" \
  "--data-root /no/such/dir: no such folder (the fashion-mnist dataset folder)" "$D" --data-root /no/such/dir
check "no store was created" test ! -e "$DB"
check "no cache folder either" test ! -e "$CACHE"
expect_input_error "missing --data-root with --dry-run" \
  "--data-root /no/such/dir: no such folder (the fashion-mnist dataset folder)" "$D" --dry-run --data-root /no/such/dir
check "no store after the dry run" test ! -e "$DB"
sed 's#^dataset: {name: fashion-mnist}#dataset: {name: fashion-mnist, root: /no/such/dir}#' "$D" > "$WORK/rooted.yaml"
expect_input_error "missing dataset.root in the matrix" \
  "$WORK/rooted.yaml:4:38: dataset.root: /no/such/dir: no such folder (the fashion-mnist dataset folder)" "$WORK/rooted.yaml"

run "$D" --data-root "$IDX" 2>full.log; rc=$?
check "the matrix runs on the fixture (exit $rc)" test $rc -eq 0
check "inputs were checked before the run" grep -q "inputs checked in .*fashion-mnist test split (256 images), train split (512 images)" full.log
check "2 ok rows" test "$(sql "select count(*) from results where status='ok'")" = 2
expect_input_error "missing --data-root with --force on a full store" \
  "--data-root /no/such/dir: no such folder (the fashion-mnist dataset folder)" "$D" --force --data-root /no/such/dir

# ---- damaged IDX files: every cell would read them, none runs ------------------------------------
damaged_root() { rm -rf "$WORK/bad"; cp -r "$IDX" "$WORK/bad"; }
TI=$WORK/bad/train-images-idx3-ubyte
damaged_root; head -c -100 "$IDX/train-images-idx3-ubyte" > "$TI"
expect_input_error "truncated IDX" \
  "--data-root $WORK/bad: $TI: truncated IDX payload: header says $((512 * 784)) bytes, file has $((512 * 784 - 100))" \
  "$D" --force --data-root "$WORK/bad"
damaged_root; put_bytes "$TI" 8 '\x00\x00\x00\x00'
expect_input_error "IDX with an impossible dimension (0 rows)" \
  "--data-root $WORK/bad: $TI: implausible IDX dimension 0 (dimension 2 of 3)" "$D" --force --data-root "$WORK/bad"
damaged_root; put_bytes "$TI" 0 '\x42'
expect_input_error "IDX with a bad magic number" \
  "--data-root $WORK/bad: $TI: bad IDX magic number (expected 0x0000 in the first two bytes)" "$D" --force --data-root "$WORK/bad"
damaged_root; gzip -c "$IDX/t10k-images-idx3-ubyte" | head -c 60000 > "$WORK/bad/t10k-images-idx3-ubyte.gz"
expect_input_error "a truncated gzip IDX" \
  "--data-root $WORK/bad: $WORK/bad/t10k-images-idx3-ubyte.gz: truncated gzip stream (unexpected end of file) (a truncated or damaged gzip file; header says $((256 * 784)) payload bytes)" \
  "$D" --force --data-root "$WORK/bad"
damaged_root; put_bytes "$WORK/bad/train-labels-idx1-ubyte" $((8 + 300)) '\x0c'
expect_input_error "an IDX label out of range" \
  "--data-root $WORK/bad: $WORK/bad/train-labels-idx1-ubyte: label 12 of item 300 outside 0..9" "$D" --force --data-root "$WORK/bad"

# ---- CIFAR and image folders ----------------------------------------------------------------------
head -c $((2 * 3073 - 5)) /dev/zero > "$CIFAR/cifar-10-batches-bin/data_batch_3.bin"
expect_input_error "a CIFAR batch of the wrong length" \
  "--data-root $CIFAR: $CIFAR/cifar-10-batches-bin/data_batch_3.bin: truncated or malformed cifar10 batch file: $((2 * 3073 - 5)) bytes is not a whole number of 3073-byte records" \
  "$D" --size cifar --data-root "$CIFAR"
mkdir -p "$IMG/train/c2"
expect_input_error "an image folder with an empty class" \
  "--data-root $IMG: $IMG/train/c2: empty class folder (no images)" "$D" --size images --data-root "$IMG"
rmdir "$IMG/train/c2"
: > "$IMG/val/c1/img1.ppm"
expect_input_error "an image folder with a zero-byte image" \
  "--data-root $IMG: $IMG/val/c1/img1.ppm: empty image file (0 bytes)" "$D" --size images --data-root "$IMG"
printf '<html>' > "$IMG/val/c1/img1.ppm"
expect_input_error "an image that is no image format" \
  "--data-root $IMG: $IMG/val/c1/img1.ppm: not an image file: its first bytes (3c 68 74 6d 6c 3e) are the magic of no format qbench decodes (JPEG, PNG, BMP, PPM/PGM/PBM, TIFF, WebP)" \
  "$D" --size images --data-root "$IMG"
check "after all of it: still one run and two rows" test "$(sql "select count(*) from runs")/$(sql "select count(*) from results")" = 1/2

# ---- a damaged cached baseline: set aside, warned about, built again ------------------------------
DB=$WORK/synth.db; CACHE=$WORK/cache_synth
run "$S" 2>synth1.log; rc=$?
check "synthetic run exits 0" test $rc -eq 0
ckpt=$(ls "$CACHE"/baselines/*.safetensors)
# top-1 and loss together: equal only when the weights are.
top1=$(sql "select top1 || '/' || loss from results where kind='fp32'")
cp "$ckpt" "$WORK/good.safetensors"
# The data section's SHA-256 and length are the ones __metadata__ records.
st_verifies() {
  local f=$1 n h sha len
  n=$(od -An -tu8 -N8 "$f" | tr -d ' ')
  h=$(head -c $((8 + n)) "$f" | tail -c "$n")
  sha=$(grep -o '"qbench_sha256":"[0-9a-f]*"' <<<"$h" | cut -d'"' -f4)
  len=$(grep -o '"qbench_data_bytes":"[0-9]*"' <<<"$h" | cut -d'"' -f4)
  [ -n "$sha" ] && [ "$(tail -c +$((9 + n)) "$f" | sha256sum | cut -d' ' -f1)" = "$sha" ] &&
    [ "$(($(stat -c %s "$f") - 8 - n))" = "$len" ]
}
check "the cached checkpoint carries its hash and length" st_verifies "$ckpt"
size=$(stat -c %s "$ckpt")
i=0
for damage in flipped truncated header; do
  cp "$WORK/good.safetensors" "$ckpt"
  case $damage in
    flipped) flip_byte "$ckpt" $((size - 40)) ;;
    truncated) head -c $((size - 1000)) "$WORK/good.safetensors" > "$ckpt" ;;
    header) put_bytes "$ckpt" 8 'X' ;;
  esac
  damaged=$(sha256sum < "$ckpt")
  aside=$ckpt.corrupt; [ $i -gt 0 ] && aside=$ckpt.corrupt.$i
  run "$S" --force 2>"damage_$damage.log"; rc=$?
  check "$damage checkpoint: the run succeeds (exit $rc)" test $rc -eq 0
  check "$damage checkpoint: a warning names it and where it went" grep -qF "warning cached checkpoint is damaged: $ckpt: " "damage_$damage.log"
  check "$damage checkpoint: ... moved aside to $(basename "$aside")" grep -qF "moved aside to $aside (kept), the baseline is built again" "damage_$damage.log"
  check "$damage checkpoint: the damaged bytes are kept" test "$(sha256sum < "$aside")" = "$damaged"
  check "$damage checkpoint: the baseline was trained again" grep -q "training FP32 baseline" "damage_$damage.log"
  check "$damage checkpoint: the rebuilt checkpoint verifies" st_verifies "$ckpt"
  again=$(sql "select top1 || '/' || loss from results where kind='fp32' order by id desc limit 1")
  check "$damage checkpoint: and gives the same FP32 top-1 and loss ($again vs $top1)" test "$again" = "$top1"
  check "$damage checkpoint: no failed cell" test "$(sql "select count(*) from results where status!='ok'")" = 0
  i=$((i + 1))
done
grep -h "warning" damage_*.log | sed 's/^/      /' | cut -c1-220

# A checkpoint from before content hashes: the same file without the two hash keys (blanked to
# spaces, so the header keeps its length). Accepted with a note, not retrained, given its hash.
n=$(od -An -tu8 -N8 "$ckpt" | tr -d ' ')
json=$(head -c $((8 + n)) "$ckpt" | tail -c "$n")
keys=$(grep -oE '"qbench_data_bytes":"[0-9]+","qbench_sha256":"[0-9a-f]{64}",' <<<"$json")
check "legacy fixture: the hash keys are in the header" test -n "$keys"
{ head -c 8 "$ckpt"; printf '%s' "${json/"$keys"/$(printf '%*s' ${#keys} '')}"; tail -c +$((9 + n)) "$ckpt"; } > "$WORK/legacy.safetensors"
check "legacy fixture: same size, no hash" bash -c "[ $(stat -c %s "$WORK/legacy.safetensors") = $(stat -c %s "$ckpt") ] && ! grep -q qbench_sha256 '$WORK/legacy.safetensors'"
cp "$WORK/legacy.safetensors" "$ckpt"
run "$S" --force 2>legacy.log; rc=$?
check "legacy checkpoint: the run succeeds (exit $rc)" test $rc -eq 0
check "legacy checkpoint: a note says it had no hash and now has one" grep -qF "info cached checkpoint $ckpt carried no content hash (written before hashes): accepted after its structural check, hash written" legacy.log
check "legacy checkpoint: not trained again" bash -c "! grep -q 'training FP32 baseline' legacy.log"
check "legacy checkpoint: it verifies now" st_verifies "$ckpt"
check "legacy checkpoint: same FP32 top-1 and loss" test "$(sql "select top1 || '/' || loss from results where kind='fp32' order by id desc limit 1")" = "$top1"

# ---- imported weights that fail verification: an input error ---------------------------------------
DB=$WORK/weights.db; CACHE=$WORK/cache_weights
run "$S" 2>/dev/null  # a store with a finished run
imported() { sed "s#^matrix:#architectures:\n  resnet8-w0.5: {weights: $1}\nmatrix:#" "$S" > "$WORK/imported.yaml"; }
head -c $((size - 8)) "$WORK/good.safetensors" > "$WORK/cut.safetensors"
imported "$WORK/cut.safetensors"
line=$(grep -n "weights:" "$WORK/imported.yaml" | cut -d: -f1)
hlen=$(od -An -tu8 -N8 "$WORK/good.safetensors" | tr -d ' ')
before=$(store_sum)
err=$(run "$WORK/imported.yaml" --force 2>&1 >/dev/null); rc=$?
check "a truncated weights file: exits 2 ($rc)" test $rc -eq 2
check "a truncated weights file: names the option at file:line:col, the file and the damage" \
  grep -qE "^qbench: error: $WORK/imported.yaml:$line:27: architectures.resnet8-w0.5.weights: $WORK/cut.safetensors: tensor '[^']+': data_offsets \[[0-9]+, [0-9]+\] outside the $((size - 8 - hlen - 8)) data bytes \(truncated file\?\)$" <<<"$err"
[ $rc -eq 2 ] || echo "      got: $err"
check "a truncated weights file: the store is byte for byte unchanged" test "$(store_sum)" = "$before"
cp "$WORK/good.safetensors" "$WORK/flipped.safetensors"; flip_byte "$WORK/flipped.safetensors" $((size - 40))
imported "$WORK/flipped.safetensors"
err=$(run "$WORK/imported.yaml" --force 2>&1 >/dev/null); rc=$?
check "a weights file with flipped bytes exits 2 ($rc)" test $rc -eq 2
check "and says its content hash does not match" grep -qF "architectures.resnet8-w0.5.weights: $WORK/flipped.safetensors: content hash mismatch" <<<"$err"
cp "$WORK/good.safetensors" "$WORK/fine.safetensors"
imported "$WORK/fine.safetensors"
run "$WORK/imported.yaml" 2>imported.log; rc=$?
check "an intact weights file imports (exit $rc)" test $rc -eq 0
check "and gives the trained top-1 and loss" test "$(sql "select top1 || '/' || loss from results where kind='fp32' order by id desc limit 1")" = "$top1"

# ---- checkpoint writes killed half way or before the rename -----------------------------------------
for fault in mid-write before-rename; do
  DB=$WORK/fault_$fault.db; CACHE=$WORK/cache_fault_$fault
  err=$(QBENCH_TEST_FAULT=checkpoint-$fault run "$S" 2>&1); rc=$?
  check "baseline write killed at $fault (exit $rc = SIGKILL)" test $rc -eq 137
  check "  by the fault hook" grep -q "QBENCH_TEST_FAULT=checkpoint-$fault: killing the process at $fault of $CACHE/baselines/" <<<"$err"
  check "  no checkpoint (the old state: none)" bash -c "! ls '$CACHE'/baselines/*.safetensors >/dev/null 2>&1"
  check "  only the temporary" bash -c "ls '$CACHE'/baselines/*.safetensors.tmp.* >/dev/null 2>&1"
  run "$S" 2>"fault_$fault.log"; rc=$?
  check "  the next run recovers (exit $rc)" test $rc -eq 0
  check "  by training the baseline" grep -q "training FP32 baseline" "fault_$fault.log"
  check "  its checkpoint verifies" st_verifies "$(ls "$CACHE"/baselines/*.safetensors)"
  check "  the dead writer's temporary is gone" bash -c "! ls '$CACHE'/baselines/*.tmp.* >/dev/null 2>&1"
  check "  same FP32 top-1 and loss as the first run" test "$(sql "select top1 || '/' || loss from results where kind='fp32' and status='ok'")" = "$top1"
done
# QAT: epoch 2's checkpoint write killed; epoch 1's stays and the cell resumes from it.
DB=$WORK/qat_ref.db; CACHE=$WORK/cache_qat_ref
mkdir -p "$CACHE/baselines"; cp "$WORK/good.safetensors" "$CACHE/baselines/$(basename "$ckpt")"
run "$S" --size qat 2>qat_ref.log; rc=$?
check "uninterrupted QAT reference run exits 0 ($rc)" test $rc -eq 0
qat_top1=$(sql "select top1 || '/' || loss from results where kind='qat'")
for fault in mid-write before-rename; do
  DB=$WORK/qat_$fault.db; CACHE=$WORK/cache_qat_$fault
  mkdir -p "$CACHE/baselines"; cp "$WORK/good.safetensors" "$CACHE/baselines/$(basename "$ckpt")"
  err=$(QBENCH_TEST_FAULT=checkpoint-$fault:epoch_2 run "$S" --size qat 2>&1); rc=$?
  check "QAT epoch-2 checkpoint killed at $fault (exit $rc)" test $rc -eq 137
  cell=$(ls -d "$CACHE"/cells/*/)
  check "  epoch 1's checkpoint is there, whole: magic, length and hash" bash -c "
    f='$cell/epoch_1.pt'; [ \"\$(head -c 8 \"\$f\")\" = QBCKPT01 ] &&
    [ \"\$(tail -c +81 \"\$f\" | sha256sum | cut -d' ' -f1)\" = \"\$(head -c 80 \"\$f\" | tail -c 64)\" ] &&
    [ \"\$(od -An -tu8 -j8 -N8 \"\$f\" | tr -d ' ')\" = \$((\$(stat -c %s \"\$f\") - 80)) ]"
  check "  no epoch 2 checkpoint" test ! -e "$cell/epoch_2.pt"
  run "$S" --size qat 2>"qat_$fault.log"; rc=$?
  check "  the next run resumes (exit $rc)" test $rc -eq 0
  check "  after epoch 1" grep -q "resuming QAT of .* after epoch 1" "qat_$fault.log"
  got=$(sql "select top1 || '/' || loss from results where kind='qat' and status='ok'")
  check "  and lands on the uninterrupted run's top-1 and loss ($got vs $qat_top1)" test "$got" = "$qat_top1"
  check "  leaving no epoch checkpoint behind" bash -c "! ls '$cell'/epoch_* >/dev/null 2>&1"
  check "  and the cell's saved state in their place" test -s "$cell/state.safetensors"
done

# ---- two concurrent runs of one matrix on one store and cache ----------------------------------------
DB=$WORK/conc.db; CACHE=$WORK/cache_conc
run "$S" --size seeds 2>conc_a.log & pa=$!
for _ in $(seq 600); do grep -q "training FP32 baseline" conc_a.log && break; sleep 0.1; done
run "$S" --size seeds 2>conc_b.log & pb=$!
declare -A seen
while kill -0 $pa 2>/dev/null || kill -0 $pb 2>/dev/null; do
  for f in "$CACHE"/baselines/*.safetensors; do
    [ -e "$f" ] && [ -z "${seen[$f]:-}" ] && seen[$f]=$(stat -c %.9Y "$f")
  done
  sleep 0.05
done
wait $pa; ra=$?; wait $pb; rb=$?
check "concurrent runs both exit 0 ($ra, $rb)" test "$ra$rb" = 00
check "each of the two baselines was trained once in all" test "$(cat conc_a.log conc_b.log | grep -c "training FP32 baseline")" = 2
check "the second run waited for the first" grep -q "waiting for another qbench process that is building this baseline" conc_b.log
check "and reused its checkpoints (it trained none)" bash -c "! grep -q 'training FP32 baseline' conc_b.log"
check "both runs finished" test "$(sql "select group_concat(status) from runs")" = "finished,finished"
check "every planned cell ran or was skipped (none pending)" test "$(sql "select count(*) from run_cells where action='pending'")" = 0
check "every row is ok" test "$(sql "select count(*) from results where status!='ok'")/$(sql "select count(*) from results")" = "0/$(sql "select count(*) from run_cells where action='run'")"
check "two checkpoints" test "$(ls "$CACHE"/baselines/*.safetensors | wc -l)" = 2
for f in "${!seen[@]}"; do
  check "$(basename "$f" | cut -c1-12): written once (mtime ${seen[$f]} unchanged)" test "$(stat -c %.9Y "$f")" = "${seen[$f]}"
done
check "no lock file left" bash -c "! ls '$CACHE'/baselines/*.lock >/dev/null 2>&1"

finish
