#!/usr/bin/env bash
# Checks longctx on a machine with a GPU that cannot build it (no compiler toolchain or no
# yaml-cpp/HDF5/MPI/Eigen/SentencePiece there): `pack` builds a self-contained bundle here,
# `run` executes the GPU tests and benchmarks from it there and prints a Markdown summary.
set -uo pipefail
export LC_ALL=C  # decimal points in $EPOCHREALTIME and in what awk reads and prints

usage() {
  cat <<'EOF'
usage: tools/device-check.sh pack [DIR]
       tools/device-check.sh run [DIR] [OUTDIR]

pack  (on the build machine, from the repository root) configures and builds a CUDA build for
      sm_90 in build-device/ (Release, no -march=native so it runs on any x86-64 CPU), then
      gathers into DIR (default .device): bin/longctx and the GPU test binaries
      (test_cuda_*, test_nccl_comm), lib/ with the shared libraries they need except the C
      runtime, the NVIDIA driver and CUDA/cuBLAS/NCCL (the GPU machine has those), configs/,
      bench/torch_gpt2.py, bench/torch_attention.py and torch_common.py (which they import),
      this script and MANIFEST; and DIR.tar.xz, the same compressed, which is what to copy to
      the GPU machine. JOBS sets the build's parallelism (2).

run   (on the GPU machine, from the repository root) runs from DIR (default .device; unpacked
      from DIR.tar.xz when only the archive is there), each
      step under a time limit, output in OUTDIR (default $OUT if set, else ./device-out):
        0. the dynamic loader resolves every library of the binaries
        a. each GPU test binary (passed / failed / skipped counts)
        b. 200 bf16 training steps of configs/quickstart.yaml on cuda (final loss, tokens/s)
        c. bench train configs/gpt2_124m.yaml: bf16 with flash and with dense attention, fp32
           with flash (tokens/s, MFU, peak GPU memory)
        d. bench attention on cuda, flash (tensor and CUDA cores) and dense at n = 1024, 4096
        e. bench/torch_gpt2.py, the PyTorch reference for the same GPT-2 shape
        f. attention: `bench attention --device cuda --sweep` (flash, longformer w=512,
           bigbird, strided; n = 64K first, then 1K to 16K; head dims 64, 128; bidirectional
           and causal) and bench/torch_attention.py on the same grid (SDPA, flash backend;
           the sparse patterns as boolean masks up to 8K), each skipping the cases its share
           of the time left cannot hold
      It keeps going after a failure and ends by printing a table (step, status, key
      figures, seconds) and the attention table (ours against PyTorch per case: TFLOP/s
      forward and forward+backward, their ratio, errors against float64), both also
      written to OUTDIR/table.md. OUTDIR/device-check.log holds every step's output,
      OUTDIR/quickstart the run directory of b, OUTDIR/attention-ours.jsonl and
      attention-torch.jsonl the rows of f; nothing else is written there. Exit status 1
      when a step failed. PYTHON picks the Python that has PyTorch (python3); BUDGET_S caps
      the whole run (420 s), of which ATTENTION_S (150 s) is kept for f: the steps before
      it stop at BUDGET_S - ATTENTION_S, and f gets what is left.
EOF
}

die() {
  echo "device-check: $*" >&2
  exit 2
}

# ---------------------------------------------------------------------------------------------
# pack

# Shared libraries the GPU machine provides itself, by soname: glibc's parts (a copy from here
# would clash with its own libc's private symbols), the driver (must match the kernel module),
# and CUDA runtime, cuBLAS and NCCL (they come with its CUDA toolkit / PyTorch environment).
SYSTEM_LIBS='^(linux-vdso|ld-linux|libc|libm|libmvec|libpthread|libdl|librt|libresolv|libutil|libnsl|libanl)\.so|^(libcuda|libcudart|libcublas|libcublasLt|libnccl)\.so'

# "soname path" of every library the loader would map for the binaries given; fails when one
# is not found here.
needed_libs() {
  local missing
  missing=$(ldd "$@" | grep 'not found')
  [ -z "$missing" ] || die "the loader cannot find, here: $missing"
  ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' | sort -u
}

# Highest GLIBC_x.y symbol version the files need: the GPU machine's glibc must be as new.
glibc_needed() {
  objdump -T "$@" 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sort -u -V | tail -1
}

cmd_pack() {
  local dir=${1:-.device} build=build-device jobs=${JOBS:-2}
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DLONGCTX_NATIVE=OFF || die "cmake configure failed"
  if ! grep -q '^LONGCTX_CUDA:BOOL=ON' "$build/CMakeCache.txt" ||
    ! grep -q '^CMAKE_CUDA_COMPILER:[A-Z]*=/' "$build/CMakeCache.txt"; then
    die "$build is not a CUDA build (needs the CUDA toolkit with nvcc and NCCL; see cmake's output)"
  fi

  # The GPU tests: single-process ones only (the test_mpi_* need mpirun, absent there).
  local tests=() src
  for src in tests/test_cuda_*.cpp tests/test_nccl_comm.cpp; do
    [ -e "$src" ] && tests+=("$(basename "$src" .cpp)")
  done
  cmake --build "$build" --parallel "$jobs" --target longctx "${tests[@]}" || die "build failed"

  # Replace an earlier bundle only: never wipe a folder that holds something else.
  if [ -d "$dir" ] && [ ! -f "$dir/MANIFEST" ] && [ -n "$(ls -A "$dir")" ]; then
    die "$dir exists and is not a bundle (no MANIFEST): choose another DIR"
  fi
  rm -rf "$dir"
  mkdir -p "$dir/bin" "$dir/lib" "$dir/tools" "$dir/bench" || die "cannot create $dir"
  cp "$build/longctx" "$dir/bin/"
  local t
  for t in "${tests[@]}"; do cp "$build/tests/$t" "$dir/bin/"; done
  # Symbol tables are of no use there and make up much of the size.
  strip --strip-unneeded "$dir"/bin/*

  local libs soname path
  libs=$(needed_libs "$dir"/bin/*) || exit 2
  while read -r soname path; do
    [[ $soname =~ $SYSTEM_LIBS ]] && continue
    cp -L "$path" "$dir/lib/$soname"
  done <<< "$libs"
  # ldd follows the whole tree, so the copies' own needs are in too; check that with the
  # bundle first on the path every library outside the machine's own set comes from it.
  local stray
  stray=$(LD_LIBRARY_PATH="$dir/lib" ldd "$dir"/bin/* "$dir"/lib/* 2>/dev/null |
    awk -v lib="$dir/lib/" '$2 == "=>" && index($3, lib) != 1 { print $1, $3 }' | sort -u |
    while read -r soname path; do [[ $soname =~ $SYSTEM_LIBS ]] || echo "$soname ($path)"; done)
  [ -z "$stray" ] || die "libraries from outside the bundle: $stray"

  cp -r configs "$dir/"
  cp tools/device-check.sh "$dir/tools/"
  cp bench/torch_common.py bench/torch_gpt2.py bench/torch_attention.py "$dir/bench/"
  {
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
    echo "cuda: $(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p'), sm_90"
    echo "glibc_needed: $(glibc_needed "$dir"/bin/* "$dir"/lib/*)"
    echo "expected_there: $(awk '$1 ~ /^(libcudart|libcublas|libcublasLt|libnccl)\.so/ { print $1 }' \
      <<< "$libs" | tr '\n' ' ')"
  } > "$dir/MANIFEST"

  echo
  echo "bundle $dir:"
  (cd "$dir" && du -b bin/* lib/* | sort -k2 | awk '{ printf "  %8.1f MiB  %s\n", $1 / 1048576, $2 }')
  cat "$dir/MANIFEST"
  local bytes
  bytes=$(du -sb "$dir" | cut -f1)
  awk -v b="$bytes" -v d="$dir" 'BEGIN { printf "size of %s: %.1f MiB\n", d, b / 1048576 }'
  # What travels is the compressed archive: the binaries each carry the CUDA kernels and
  # shrink several times under xz.
  tar -C "$(dirname "$dir")" -cf - "$(basename "$dir")" | xz -6 -T0 > "$dir.tar.xz" ||
    die "cannot write $dir.tar.xz"
  bytes=$(stat -c %s "$dir.tar.xz")
  awk -v b="$bytes" -v d="$dir.tar.xz" 'BEGIN { printf "size of %s: %.1f MiB\n", d, b / 1048576 }'
  if [ "$bytes" -gt $((40 * 1024 * 1024)) ]; then
    echo "warning: the archive is over 40 MiB; keep it small, it is copied to the GPU machine" >&2
  fi
}

# ---------------------------------------------------------------------------------------------
# run

ROWS=()      # the summary table's rows
FAILED=0     # steps that failed
DEADLINE=0   # $SECONDS when the whole run must be over
OUTDIR=""
SCRATCH=""   # each step's output before it is appended to device-check.log
BUNDLE=""
LIB_PATH=""  # LD_LIBRARY_PATH for the bundle's binaries

say() {
  echo "$*"
  echo "$*" >> "$OUTDIR/device-check.log"
}

row() {  # row STEP STATUS FIGURES SECONDS
  ROWS+=("| $1 | $2 | $3 | $4 |")
  case $2 in FAIL* | timeout*) FAILED=$((FAILED + 1)) ;; esac
}

# The CUDA library folders of the GPU machine: the PyTorch environment's wheels
# (site-packages/nvidia/*/lib: cuda runtime, cuBLAS, NCCL) first, then the toolkit's and the
# driver's usual places.
cuda_lib_dirs() {
  timeout 30 "${PYTHON:-python3}" - <<'EOF' 2>/dev/null
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit(0)
for base in list(nvidia.__path__):
    for d in sorted(glob.glob(os.path.join(base, "*", "lib"))):
        print(d)
EOF
  local d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/nvidia/lib64; do
    [ -d "$d" ] && echo "$d"
  done
}

# run_step NAME MAX_SECONDS CMD...: runs CMD with the bundle's libraries under a time limit
# (MAX_SECONDS or what is left of the budget), its output in STEP_LOG. Sets STEP_RC,
# STEP_SECS, STEP_STATUS (ok, "FAIL (exit N)", "timeout (N s)", or "skipped (time budget)"
# with STEP_RC -1) and STEP_LOG.
run_step() {
  local name=$1 max=$2
  shift 2
  STEP_LOG="$SCRATCH/$name.log"
  local left=$((DEADLINE - SECONDS))
  local limit=$((max < left ? max : left))
  if [ "$limit" -lt 5 ]; then
    STEP_RC=-1 STEP_SECS=0 STEP_STATUS="skipped (time budget)"
    echo "skipped: the run's time budget is spent" > "$STEP_LOG"
    say "[$name] skipped: time budget spent"
    return
  fi
  say "[$name] $* (limit ${limit} s)"
  local t0=$EPOCHREALTIME
  # Launcher variables would make longctx start MPI, which the bundle cannot (no Open MPI
  # plugins there): a plain run is one process.
  local env=(env -u OMPI_COMM_WORLD_SIZE -u PMI_SIZE -u PMIX_RANK -u SLURM_NTASKS)
  if [ -n "$LIB_PATH" ]; then env+=(LD_LIBRARY_PATH="$LIB_PATH"); else env+=(-u LD_LIBRARY_PATH); fi
  timeout --kill-after=10 "$limit" "${env[@]}" "$@" > "$STEP_LOG" 2>&1
  STEP_RC=$?
  STEP_SECS=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  case $STEP_RC in
    0) STEP_STATUS=ok ;;
    124 | 137) STEP_STATUS="timeout (${limit} s)" ;;
    *) STEP_STATUS="FAIL (exit $STEP_RC)" ;;
  esac
  {
    echo "=== $name: $STEP_STATUS, ${STEP_SECS} s"
    cat "$STEP_LOG"
    echo
  } >> "$OUTDIR/device-check.log"
  say "[$name] $STEP_STATUS in ${STEP_SECS} s"
  # A failure's last lines on stdout too, so the cause shows without the log.
  if [ "$STEP_RC" -ne 0 ]; then tail -n 3 "$STEP_LOG" | sed 's/^/    /'; fi
}

# num FILE KEY: the first number under "KEY" in the JSON text of FILE ("" when absent).
num() {
  sed -n "s/.*\"$2\": *\(-\{0,1\}[0-9][0-9.eE+-]*\).*/\1/p" "$1" | head -n 1
}

# fmt VALUE PRINTF-FORMAT [SCALE]: VALUE*SCALE formatted, or "?" when VALUE is empty.
fmt() {
  if [ -z "$1" ]; then echo "?"; else awk -v v="$1" -v s="${3:-1}" "BEGIN { printf \"$2\", v * s }"; fi
}

# The last line of a failed step's output, shortened, for the table ("-" when it ran fine).
why() {
  if [ "$STEP_RC" -le 0 ]; then echo "-"; return; fi
  grep -v '^[[:space:]]*$' "$STEP_LOG" | tail -n 1 | cut -c 1-100 | sed 's/|/\\|/g'
}

# Step 0: every library of the bundle's binaries found, with the GPU machine's glibc new
# enough; names the CUDA libraries picked.
step_loader() {
  run_step loader 20 ldd "$BUNDLE"/bin/*
  local figures
  figures=$(awk '$2 == "=>" && $1 ~ /^(libcudart|libcublasLt|libnccl)\./ { print $1 " -> " $3 }' \
    "$STEP_LOG" | sort -u | tr '\n' ';' | sed 's/;$//; s/;/; /g')
  if grep -q 'not found' "$STEP_LOG"; then
    STEP_STATUS="FAIL"
    figures="missing: $(grep 'not found' "$STEP_LOG" | awk '{ print $1 }' | sort -u | tr '\n' ' ')"
  fi
  local need have
  need=$(sed -n 's/^glibc_needed: GLIBC_//p' "$BUNDLE/MANIFEST" 2>/dev/null)
  have=$(ldd --version 2>/dev/null | head -n 1 | grep -o '[0-9]\+\.[0-9]\+$')
  if [ -n "$need" ] && [ -n "$have" ] &&
    [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | tail -n 1)" != "$have" ]; then
    STEP_STATUS="FAIL"
    figures="glibc $have here, the bundle needs $need; $figures"
  fi
  row "0. loader" "$STEP_STATUS" "${figures:--}" "$STEP_SECS"
}

# Step a: each GPU test binary; counts from GoogleTest's closing lines.
step_tests() {
  local bin name ran passed skipped failed status
  local found=0
  for bin in "$BUNDLE"/bin/test_*; do
    [ -x "$bin" ] || continue
    found=1
    name=$(basename "$bin")
    run_step "$name" 90 "$bin" --gtest_brief=1
    ran=$(sed -n 's/^\[==========\] \([0-9]*\) tests\{0,1\} from .* ran\..*/\1/p' "$STEP_LOG" | tail -n 1)
    passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$STEP_LOG" | tail -n 1)
    skipped=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$STEP_LOG" | tail -n 1)
    status=$STEP_STATUS
    if [ "$STEP_RC" -eq -1 ]; then
      row "a. $name" "$status" "-" 0
      continue
    fi
    if [ -z "$ran" ]; then
      # No closing line: it crashed, hung or could not start.
      [ "$status" = ok ] && status="FAIL (no summary)"
      row "a. $name" "$status" "did not finish (see device-check.log)" "$STEP_SECS"
      continue
    fi
    passed=${passed:-0} skipped=${skipped:-0}
    failed=$((ran - passed - skipped))
    if [ "$status" = ok ] && [ "$passed" -eq 0 ] && [ "$skipped" -gt 0 ]; then status=skipped; fi
    row "a. $name" "$status" "$passed passed, $failed failed, $skipped skipped" "$STEP_SECS"
  done
  [ "$found" = 1 ] || row "a. GPU tests" "FAIL" "no test binaries in $BUNDLE/bin" 0
}

# Step b: a short bf16 training run on the GPU; figures from its summary.json.
step_quickstart() {
  local run_dir="$OUTDIR/quickstart"
  rm -rf "$run_dir"
  run_step quickstart 120 "$BUNDLE/bin/longctx" train "$BUNDLE/configs/quickstart.yaml" \
    --set run.device=cuda --set train.precision=bf16 --set train.steps=200 \
    --set run.out_dir="$run_dir"
  local figures
  figures=$(why)
  if [ -f "$run_dir/summary.json" ]; then
    figures="final loss $(fmt "$(num "$run_dir/summary.json" final_loss)" %.4f), $(fmt \
      "$(num "$run_dir/summary.json" tokens_per_s)" %.0f) tokens/s"
  fi
  row "b. quickstart train 200 steps bf16" "$STEP_STATUS" "$figures" "$STEP_SECS"
}

# Step c: GPT-2 124M training-step throughput in one precision.
step_bench_train() {
  local precision=$1 pattern=$2 name="bench_train_$1_$2"
  # Two warm-up steps: the first pays for allocations and cuBLASLt's algorithm choice.
  run_step "$name" 150 "$BUNDLE/bin/longctx" bench train "$BUNDLE/configs/gpt2_124m.yaml" \
    --set train.precision="$precision" --set attention.pattern="$pattern" --warmup 2 --json
  local figures json="$SCRATCH/$name.json"
  figures=$(why)
  grep '^{' "$STEP_LOG" > "$json"
  if [ -s "$json" ]; then
    figures="$(fmt "$(num "$json" tokens_per_s)" %.0f) tokens/s, step $(fmt "$(num "$json" step_ms)" \
      %.1f) ms, mfu $(fmt "$(num "$json" mfu)" %.1f%% 100), peak $(fmt "$(num "$json" peak_gpu_mb)" \
      %.0f) MiB"
  fi
  row "c. bench train gpt2_124m $precision $pattern" "$STEP_STATUS" "$figures" "$STEP_SECS"
}

# Step d: attention kernels on the GPU at GPT-2's head shape (12 heads of 64), causal.
step_bench_attention() {
  run_step bench_attention 90 "$BUNDLE/bin/longctx" bench attention --device cuda \
    --pattern flash,dense --n 1024,4096 --heads 12 --head-dim 64 --causal --json
  if [ "$STEP_RC" -eq 2 ] && grep -q -- "unknown [a-z]* '--device'" "$STEP_LOG"; then
    row "d. bench attention cuda" "not available" "bench attention has no --device" "$STEP_SECS"
    return
  fi
  local line impl n figures rows=0
  while IFS= read -r line; do
    rows=$((rows + 1))
    impl=$(sed -n 's/.*"impl":"\([a-z_]*\)".*/\1/p' <<< "$line")
    n=$(sed -n 's/.*"n":\([0-9]*\).*/\1/p' <<< "$line")
    if grep -q '"skipped"\|"error"' <<< "$line"; then
      figures=$(sed -n 's/.*"\(skipped\|error\)":"\([^"]*\)".*/\1: \2/p' <<< "$line" | cut -c 1-100)
    else
      figures="fwd $(fmt "$(num - fwd_ms <<< "$line")" %.3f) ms, fwd+bwd $(fmt \
        "$(num - fwd_bwd_ms <<< "$line")" %.3f) ms, $(fmt "$(num - fwd_bwd_tflops <<< "$line")" \
        %.1f) TFLOP/s (3.5x fwd FLOPs), err $(fmt "$(num - fwd_err <<< "$line")" %.1e)"
    fi
    row "d. attention $impl n=$n" "$STEP_STATUS" "$figures" "$STEP_SECS"
  done < <(grep '^{' "$STEP_LOG")
  [ "$rows" -gt 0 ] || row "d. bench attention cuda" "$STEP_STATUS" "$(why)" "$STEP_SECS"
}

# Step e: the PyTorch reference. Its own environment's libraries: none of the bundle's (our
# older libstdc++ first on the path could break PyTorch's extensions).
step_torch() {
  local saved=$LIB_PATH
  LIB_PATH=${LD_LIBRARY_PATH:-}
  run_step torch_gpt2 150 "${PYTHON:-python3}" "$BUNDLE/bench/torch_gpt2.py" --json
  LIB_PATH=$saved
  local figures json="$SCRATCH/torch_gpt2.json"
  figures=$(why)
  grep '^{' "$STEP_LOG" > "$json"
  if [ -s "$json" ]; then
    figures="$(fmt "$(num "$json" tokens_per_s)" %.0f) tokens/s, step $(fmt "$(num "$json" step_ms)" \
      %.1f) ms, mfu $(fmt "$(num "$json" mfu)" %.1f%% 100), peak $(fmt \
      "$(num "$json" peak_mem_mb)" %.0f) MiB"
  elif [ "$STEP_RC" -eq 2 ]; then
    STEP_STATUS="skipped"
  fi
  row "e. pytorch gpt2 reference bf16" "$STEP_STATUS" "$figures" "$STEP_SECS"
}

# Step f: the attention sweep, ours and PyTorch's on the same grid, each under a share of the
# time left that leaves it room to skip its remaining cases and exit on its own (n = 64K first:
# longformer against flash there is the figure the sweep is for).
ATTN_WHY=()  # why a side has no rows, for the attention table
step_attention() {
  local ours="$OUTDIR/attention-ours.jsonl" theirs="$OUTDIR/attention-torch.jsonl"
  local grid=(--n 65536,1024,2048,4096,8192,16384 --window 512)
  rm -f "$ours" "$theirs"
  # Ours gets the larger share: two impls of full attention, and float64 references on the host.
  local left=$((DEADLINE - SECONDS))
  local share=$((left * 11 / 20))
  run_step attention_ours "$share" "$BUNDLE/bin/longctx" bench attention --device cuda --sweep \
    --pattern flash,longformer,bigbird,strided "${grid[@]}" --global-tokens 0 \
    --time-budget $((share > 40 ? share - 30 : 1)) --jsonl "$ours"
  attention_row "f. attention sweep (ours)" "$ours"

  # Its own environment's libraries, as in step e.
  local saved=$LIB_PATH
  LIB_PATH=${LD_LIBRARY_PATH:-}
  left=$((DEADLINE - SECONDS))
  run_step attention_torch "$left" "${PYTHON:-python3}" "$BUNDLE/bench/torch_attention.py" \
    "${grid[@]}" --time-budget $((left > 40 ? left - 30 : 1)) --jsonl "$theirs"
  LIB_PATH=$saved
  [ "$STEP_RC" -eq 2 ] && STEP_STATUS="skipped"
  attention_row "f. attention sweep (pytorch)" "$theirs"
}

# attention_row STEP JSONL: the side's counts for the step table; why it has no rows, for the
# attention table.
attention_row() {
  local all=0 done_=0 skipped=0 errors=0
  if [ -f "$2" ]; then
    all=$(grep -c '^{' "$2")
    skipped=$(grep -c '"skipped"' "$2")
    errors=$(grep -c '"error"' "$2")
    done_=$((all - skipped - errors))
  fi
  local figures="$done_ cases, $skipped skipped, $errors failed"
  [ "$STEP_RC" -le 0 ] || figures="$figures; $(why)"
  row "$1" "$STEP_STATUS" "$figures" "$STEP_SECS"
  [ "$done_" -gt 0 ] || ATTN_WHY+=("$1: $STEP_STATUS, $(why)")
}

# The attention table: each of our rows beside PyTorch's of the same (pattern, causal, head
# dim, n).
attention_table() {
  local ours="$OUTDIR/attention-ours.jsonl" theirs="$OUTDIR/attention-torch.jsonl"
  if ! command -v "${PYTHON:-python3}" > /dev/null; then
    echo "no attention table: ${PYTHON:-python3} is not there to join the rows"
    return
  fi
  "${PYTHON:-python3}" - "$ours" "$theirs" "${ATTN_WHY[@]}" <<'EOF'
import json, os, sys

def load(path):
    rows = []
    if os.path.exists(path):
        for line in open(path):
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    return rows

def key(r):
    return (r["pattern"], r["causal"], r["head_dim"], r["n"])

def ok(r):
    return r is not None and "fwd_ms" in r

def case(r):
    extra = f" w={r['window']}" if r["pattern"] == "longformer" else ""
    return (f"{r['impl']} {r['pattern']}{extra} {'causal' if r['causal'] else 'bidir'} "
            f"D={r['head_dim']} n={r['n']} ({r['batch']}x{r['heads']})")

def status(r):
    return ("skipped: " + r["skipped"]) if "skipped" in r else ("error: " + r.get("error", "?"))

def err(r):
    if not ok(r):
        return "-"
    return f"{r['fwd_err']:.1e}" + (f" / {r['grad_err']:.1e}" if "grad_err" in r else "")

ours, theirs = load(sys.argv[1]), load(sys.argv[2])
by_key = {key(r): r for r in theirs}
print("Attention, ours (longctx) against PyTorch SDPA: batch x heads = 65536 / n (heads = "
      "min(16, that)), MHA, bf16. TFLOP/s over the allowed scores (fwd 4*D per score, fwd+bwd "
      "3.5x fwd); ratio = ours / torch fwd+bwd TFLOP/s; det = our deterministic backward; err = "
      "relative L2 against float64, fwd (32 rows of head 0) / grads (head 0; n <= 2K ours, "
      "n <= 4K torch). Torch's longformer, bigbird and strided rows are dense SDPA with a "
      "boolean mask (efficient backend, n <= 8K; bigbird's random blocks its own draw): "
      "informative.")
print()
print("| case | ours fwd TFLOP/s | torch fwd | ours fwd+bwd | torch fwd+bwd | ratio | ours err | torch err |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
mismatch = False
for r in ours:
    t = by_key.get(key(r))
    cells = [case(r)]
    if ok(r):
        fb = f"{r['fwd_bwd_tflops']:.1f}"
        if "fwd_bwd_det_tflops" in r:
            fb += f" (det {r['fwd_bwd_det_tflops']:.1f})"
        cells += [f"{r['fwd_tflops']:.1f}", f"{t['fwd_tflops']:.1f}" if ok(t) else "-", fb,
                  f"{t['fwd_bwd_tflops']:.1f}" if ok(t) else (status(t)[:60] if t else "-"),
                  f"{r['fwd_bwd_tflops'] / t['fwd_bwd_tflops']:.2f}x"
                  if ok(t) and t["fwd_bwd_tflops"] > 0 else "-"]
    else:
        cells += [status(r)[:80], "-", "-", "-", "-"]
    cells += [err(r), err(t)]
    if ok(r) and ok(t) and (t["batch"], t["heads"], t["allowed_scores"]) != (
            r["batch"], r["heads"], r["allowed_scores"]):
        cells[0] += " (*)"
        mismatch = True
    print("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
seen = {key(r) for r in ours}
for t in theirs:
    if key(t) not in seen and ok(t):
        print(f"| {case(t)} | - | {t['fwd_tflops']:.1f} | - | {t['fwd_bwd_tflops']:.1f} | - | - | {err(t)} |")
if not ours and not theirs:
    why = "; ".join(a.replace("|", "/") for a in sys.argv[3:]) or "neither side wrote rows"
    print(f"| no rows: {why} | - | - | - | - | - | - | - |")
if mismatch:
    print()
    print("(*) batch, heads or allowed scores differ between the two rows.")
# What the sweep is for: longformer forward+backward at the longest n against full attention.
full = {(r["causal"], r["head_dim"], r["n"]): r for r in ours
        if r["impl"] == "flash_tc" and r["pattern"] == "full" and ok(r)}
longest = max((r["n"] for r in ours), default=0)
for r in ours:
    f = full.get((r["causal"], r["head_dim"], r["n"]))
    if r["pattern"] == "longformer" and r["n"] == longest and ok(r) and f:
        print()
        print(f"longformer w={r['window']} against flash_tc full, "
              f"{'causal' if r['causal'] else 'bidir'} D={r['head_dim']} n={r['n']}: fwd+bwd "
              f"{f['fwd_bwd_ms'] / r['fwd_bwd_ms']:.1f}x faster ({r['fwd_bwd_ms']:.2f} ms "
              f"against {f['fwd_bwd_ms']:.2f} ms; goal >= 10x)")
EOF
}

cmd_run() {
  BUNDLE=${1:-.device}
  OUTDIR=${2:-${OUT:-./device-out}}
  if [ ! -x "$BUNDLE/bin/longctx" ] && [ -f "$BUNDLE.tar.xz" ]; then  # the archive pack wrote
    tar -C "$(dirname "$BUNDLE")" -xJf "$BUNDLE.tar.xz" || die "cannot unpack $BUNDLE.tar.xz"
  fi
  [ -x "$BUNDLE/bin/longctx" ] || die "no bundle in $BUNDLE (make one with: tools/device-check.sh pack)"
  mkdir -p "$OUTDIR" || die "cannot create $OUTDIR"
  SCRATCH=$(mktemp -d) || die "cannot create a temporary folder"
  trap 'rm -rf "$SCRATCH"' EXIT
  BUNDLE=$(cd "$BUNDLE" && pwd)
  OUTDIR=$(cd "$OUTDIR" && pwd)  # absolute: handed to longctx as run.out_dir
  : > "$OUTDIR/device-check.log"
  local budget=${BUDGET_S:-420} reserve=${ATTENTION_S:-150}
  DEADLINE=$((SECONDS + budget - reserve))  # step f's reserve is added back before it runs

  LIB_PATH=$BUNDLE/lib
  local d
  while IFS= read -r d; do LIB_PATH+=":$d"; done < <(cuda_lib_dirs)
  [ -n "${LD_LIBRARY_PATH:-}" ] && LIB_PATH+=":$LD_LIBRARY_PATH"

  say "bundle: $BUNDLE"
  [ -f "$BUNDLE/MANIFEST" ] && say "$(sed 's/^/  /' "$BUNDLE/MANIFEST")"
  say "LD_LIBRARY_PATH for the bundle: $LIB_PATH"
  local gpu
  if command -v nvidia-smi > /dev/null; then
    gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)
  else
    gpu="none (no nvidia-smi)"
  fi
  say "GPU: $gpu"

  step_loader
  step_tests
  step_quickstart
  step_bench_train bf16 flash
  step_bench_train bf16 dense  # cuBLASLt scores: which attention is faster at seq 1024
  step_bench_train fp32 flash
  step_bench_attention
  step_torch
  DEADLINE=$((DEADLINE + reserve))
  step_attention

  {
    echo "GPU: $(head -n 1 <<< "$gpu"); bundle $(sed -n 's/^built: //p' "$BUNDLE/MANIFEST" 2>/dev/null)"
    echo
    echo "| step | status | key figures | seconds |"
    echo "| --- | --- | --- | --- |"
    printf '%s\n' "${ROWS[@]}"
    echo
    attention_table
  } > "$OUTDIR/table.md"
  cat "$OUTDIR/table.md" >> "$OUTDIR/device-check.log"
  echo
  cat "$OUTDIR/table.md"
  [ "$FAILED" -eq 0 ]
}

# ---------------------------------------------------------------------------------------------

case ${1:-} in
  pack)
    shift
    [ $# -le 1 ] || { usage >&2; exit 2; }
    # DIR as given from here; the build runs from the repository root.
    out=${1:-.device}
    [[ $out == /* ]] || out=$PWD/$out
    cd "$(dirname "$0")/.." || exit 2
    cmd_pack "$out"
    ;;
  run)
    shift
    [ $# -le 2 ] || { usage >&2; exit 2; }
    cmd_run "$@"
    ;;
  -h | --help | help)
    usage
    ;;
  *)
    usage >&2
    exit 2
    ;;
esac
