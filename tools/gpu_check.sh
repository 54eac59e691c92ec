#!/usr/bin/env bash
# tools/gpu_check.sh OUTDIR [--rehearse]: prove the GPU path in one run of at most ~8 minutes (issue 17).
#
# Runs, most valuable first, each phase under its own `timeout` (a failing or hanging phase is logged and the
# script goes on): minigrad.selftest --device cuda --with-tests (and, only if it fails, the cuda test suite again
# with tracebacks); benchmarks/train_step.py --device cuda against torch eager; a real tinygpt.train --device cuda
# run on tinyshakespeare and generation from it; the baby-GPT benchmark on cuda; the same benchmark
# and a short run in bfloat16 and float16; NCCL at world size 1 (--dist nccl); peak GPU memory per dtype; a per-op
# and per-kernel profile of the step; nanoGPT's char-level baby GPT recipe; torch.compile if time is left. A phase
# that would start with under 20 s of the budget left is skipped, and each phase's timeout is cut to what is left.
# Needs no install: PYTHONPATH=. and the machine's python3 (cupy, torch, numpy, ml-dtypes, mpi4py, pytest).
#
# OUTDIR gets at most 7 files (the device tool brings back 8): summary.txt (environment, one line per phase,
# the key lines of each), selftest.log, train_step.log, train.log, baby_gpt.log, nccl.log, memory_profile.log.
# The summary is printed at the end too. docs/gpu_check.md has the device call and how to read the reports.
#
# --rehearse (or GPU_CHECK_DEVICE=cpu) runs the same phases on a machine without a GPU, at tiny sizes: commands
# written for `--device cuda` run on the strict CuPy stand-in registered as cuda:0 (tests/strict_cupy.py, a
# numpy-backed simulation), the torch comparisons on the CPU, --dist mpi instead of nccl.
#
# Environment: GPU_CHECK_BUDGET (seconds for all phases, default 450), GPU_CHECK_ONLY (comma-separated phase
# names to run, e.g. "selftest,pytest"), GPU_CHECK_DATA (tinyshakespeare.txt; default gpu_check_data/ in the
# checkout, else ../shared/data/), GPU_CHECK_TRAIN_STEPS (300), GPU_CHECK_CHAR_STEPS (2000), PYTHON.
set -u -o pipefail

usage() { echo "usage: tools/gpu_check.sh OUTDIR [--rehearse] | tools/gpu_check.sh --prepare" >&2; exit 2; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 2
DATA_DIR=gpu_check_data

OUTDIR="" REHEARSE=0
[ "${GPU_CHECK_DEVICE:-cuda}" = cpu ] && REHEARSE=1
for a in "$@"; do
    case "$a" in
        --rehearse) REHEARSE=1 ;;
        --prepare)  # here, before the device call: put the corpus into the git-ignored folder that the call carries
            mkdir -p "$DATA_DIR" && install -m 0644 "${GPU_CHECK_DATA:-../shared/data/tinyshakespeare.txt}" "$DATA_DIR/" \
                && ls -l "$DATA_DIR" && git check-ignore -q "$DATA_DIR" && echo "carry: [\"$DATA_DIR\"]"; exit ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        -*) usage ;;
        *) [ -z "$OUTDIR" ] || usage; OUTDIR=$a ;;
    esac
done
[ -n "$OUTDIR" ] || usage
mkdir -p "$OUTDIR" && OUTDIR=$(cd "$OUTDIR" && pwd) || exit 2

PY=${PYTHON:-$(command -v python3 || command -v python)}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg PYTHONDONTWRITEBYTECODE=1
BUDGET=${GPU_CHECK_BUDGET:-450}
START=$(date +%s)
DEADLINE=$((START + BUDGET))
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
RUNS=$WORK/runs
CACHE=$WORK/cache
SUMMARY=$OUTDIR/summary.txt
: >"$SUMMARY"
trap 'rm -rf "$WORK"' EXIT

DATA=${GPU_CHECK_DATA:-}
if [ -z "$DATA" ]; then
    for d in "$DATA_DIR/tinyshakespeare.txt" ../shared/data/tinyshakespeare.txt; do
        [ -f "$d" ] && { DATA=$d; break; }
    done
fi

if [ "$REHEARSE" = 1 ]; then
    MODE="REHEARSAL (no GPU: 'cuda' is the strict stand-in, torch comparisons on the CPU, tiny sizes)"
    CUDA_PY=("$PY" tools/gpu_check.py --standin run)  # runs `-m MODULE ...` / `SCRIPT ...` with cuda = stand-in
    BENCH_DEV=cpu DIST=mpi
    TS_SIZE=(--steps 2 --warmup 1 --run 1 --batch 2)
    RUN_SIZE=(--batch-size 2 --block-size 32 --eval-batches 1 --sample-tokens 8)
    TRAIN_STEPS=4 LOW_STEPS=2 NCCL_STEPS=2 CHAR_STEPS=4 EVAL=2 LOW_EVAL=2 CHAR_EVAL=2 CHAR_EVAL_BATCHES=1
    GEN_TOKENS=8 BABY_SIZE=(--iters 4 --turn 2 --eval-batches 1 --log-every 2)
    HELPER_SIZE=(--steps 1 --batch 2)
    HELPER=("$PY" tools/gpu_check.py --standin)
else
    MODE="GPU"
    CUDA_PY=("$PY")
    BENCH_DEV=cuda DIST=nccl
    TS_SIZE=(--steps 40 --warmup 5 --run 4)
    RUN_SIZE=(--eval-batches 20 --sample-tokens 40)
    TRAIN_STEPS=${GPU_CHECK_TRAIN_STEPS:-300} LOW_STEPS=100 NCCL_STEPS=20 CHAR_STEPS=${GPU_CHECK_CHAR_STEPS:-2000}
    EVAL=100 LOW_EVAL=50 CHAR_EVAL=500 CHAR_EVAL_BATCHES=200
    GEN_TOKENS=120 BABY_SIZE=(--iters 500 --turn 100 --eval-batches 50 --log-every 100)
    HELPER_SIZE=(--steps 3)
    HELPER=("$PY" tools/gpu_check.py)
fi
COMMON=(--data "$DATA" --cache-dir "$CACHE" --no-progress --overwrite --seed 1337)

say() { printf '[%4ds] %s\n' $(($(date +%s) - START)) "$*"; }

wanted() {  # wanted NAME: in GPU_CHECK_ONLY (or no filter)
    [ -z "${GPU_CHECK_ONLY:-}" ] && return 0
    case ",$GPU_CHECK_ONLY," in *",$1,"*) return 0 ;; esac
    return 1
}

COUNTS=""
note() {  # note NAME STATUS RC SECS LOG [DETAIL]: one row of the phase table, written at once (survives a kill)
    printf '%-20s %-8s %4s %7s  %-19s %s\n' "$1" "$2" "$3" "$4" "$5" "${6:-}" >>"$SUMMARY"
    COUNTS="$COUNTS $2"
    say "$1: $2${6:+ ($6)}"
}

skip() { wanted "$1" && note "$1" SKIP - - "$2" "$3"; return 0; }

# run_phase NAME LOG TIMEOUT KEY CMD...: run CMD with its own timeout (cut to the budget left), its output appended
# to OUTDIR/LOG, its exit code logged; the lines of its output matching the regex KEY go into the summary.
run_phase() {
    local name=$1 log=$2 limit=$3 key=$4; shift 4
    wanted "$name" || return 0
    local left=$((DEADLINE - $(date +%s)))
    if [ "$left" -lt 20 ]; then note "$name" SKIP - - "$log" "budget: ${left}s left"; return 0; fi
    [ "$limit" -gt "$left" ] && limit=$left
    local path=$OUTDIR/$log
    touch "$path"
    local from=$(($(wc -l <"$path") + 1))
    { echo; echo "=== $name: $*"; echo "=== start $(date -u +%H:%M:%S) UTC, timeout ${limit}s"; } >>"$path"
    say "$name: start (timeout ${limit}s)"
    local t0 rc secs status
    t0=$(date +%s.%N)
    timeout -k 10 "$limit" "$@" >>"$path" 2>&1 </dev/null
    rc=$?
    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    echo "=== $name: exit $rc after ${secs}s" >>"$path"
    case $rc in 0) status=PASS ;; 124|137) status=TIMEOUT ;; *) status=FAIL ;; esac
    note "$name" "$status" "$rc" "$secs" "$log"
    {
        tail -n +"$from" "$path" | grep -v '^===' | grep -E -- "$key" | cut -c1-220 | head -n 14 | sed 's/^/    /'
        [ "$status" = PASS ] || tail -n +"$from" "$path" | grep -v '^===' | tail -n 6 | cut -c1-220 | sed 's/^/    ! /'
    } >>"$SUMMARY"
    return "$rc"
}

has_opt() {  # has_opt OPTION CMD...: CMD --help mentions OPTION (feature test: works before and after a change)
    local opt=$1; shift
    "$@" --help 2>/dev/null | grep -q -- "$opt"
}

# ---------------------------------------------------------------- environment (into summary.txt)
{
    echo "gpu_check: $MODE"
    echo "started $(date -u '+%Y-%m-%d %H:%M:%S') UTC on $(uname -n), budget ${BUDGET}s, python $PY"
    if git rev-parse --short HEAD >/dev/null 2>&1; then
        echo "checkout: commit $(git rev-parse --short HEAD), $(git status --short | wc -l) changed or untracked files"
    else
        echo "checkout: no .git here (the device call copies the working tree only): note the commit where the call was made"
    fi
    echo "data: ${DATA:-none (copy tinyshakespeare.txt into $DATA_DIR/: tools/gpu_check.sh --prepare)}"
    echo
    echo "== environment"
    if command -v nvidia-smi >/dev/null; then
        timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm,temperature.gpu,power.draw,utilization.gpu --format=csv 2>&1
        timeout 30 nvidia-smi 2>&1 | head -n 20
    else
        echo "nvidia-smi: not found"
    fi
    timeout 60 "$PY" tools/gpu_check.py env 2>&1
    echo
    echo "== phases (each: status, exit code, seconds, its log; then its key lines; '!' lines end a failed phase's output)"
    printf '%-20s %-8s %4s %7s  %-19s %s\n' phase status rc secs log detail
} >>"$SUMMARY"
say "environment written to summary.txt"

# feature tests: the scripts' options as they are in this checkout
TS_DTYPE=0 TRAIN_DTYPE=0 BABY_DEVICE=0 MEM_DEVICE=0 TS_COMPILE=0 MPI_OK=0 PYTEST_TIMEOUT=()
has_opt bfloat16 "$PY" benchmarks/train_step.py && TS_DTYPE=1
has_opt --compile "$PY" benchmarks/train_step.py && TS_COMPILE=1
has_opt bfloat16 "$PY" -m tinygpt.train && TRAIN_DTYPE=1
has_opt --device "$PY" benchmarks/baby_gpt.py && BABY_DEVICE=1
has_opt --device "$PY" benchmarks/memory.py && MEM_DEVICE=1
"$PY" -c "from mpi4py import MPI" >/dev/null 2>&1 && MPI_OK=1
"$PY" -c "import pytest_timeout" >/dev/null 2>&1 && PYTEST_TIMEOUT=(--timeout 120)
MPIEXEC=()
if command -v mpiexec >/dev/null; then
    MPIEXEC=("$(command -v mpiexec)" -n 1)
    mpiexec --version 2>&1 | grep -qi "open mpi" && [ "$(id -u)" = 0 ] && MPIEXEC+=(--allow-run-as-root)
fi
say "features: train_step --dtype $TS_DTYPE, --compile $TS_COMPILE; train --dtype $TRAIN_DTYPE; baby_gpt --device $BABY_DEVICE; memory.py --device $MEM_DEVICE; mpi4py $MPI_OK; mpiexec: ${MPIEXEC[*]:-none}"

# ---------------------------------------------------------------- 1. selftest (+ the cuda test suite)
if [ "$REHEARSE" = 1 ]; then  # --with-tests would run pytest -m cuda in a subprocess that has no stand-in
    run_phase selftest selftest.log 180 '^result:|FAIL|pytest -m cuda' "${CUDA_PY[@]}" -m minigrad.selftest --device cuda
    SELFTEST_RC=1  # rehearse the rerun below as well
    PYTEST_CMD=("$PY" -m pytest -q -p no:cacheprovider -rfE --tb=short --durations=5 tests/minigrad/test_cuda_gpu.py -m "not cuda")
else
    run_phase selftest selftest.log 180 '^result:|FAIL|pytest -m cuda|^  [a-z_0-9]+ +(PASS|FAIL)' \
        "$PY" -m minigrad.selftest --device cuda --with-tests
    SELFTEST_RC=$?
    PYTEST_CMD=(env MINIGRAD_REQUIRE_CUDA=1 "$PY" -m pytest -q -m cuda -p no:cacheprovider -rfE --tb=short
                --durations=10 "${PYTEST_TIMEOUT[@]}" tests)
fi
# the same suite again with tracebacks, only when the selftest failed (its report lists failing test names only)
if [ "$SELFTEST_RC" != 0 ] || [ -n "${GPU_CHECK_ONLY:-}" ]; then
    run_phase pytest selftest.log 150 ' passed| failed|^FAILED|^ERROR|^skipped:' "${PYTEST_CMD[@]}"
else
    skip pytest selftest.log "the selftest's pytest -m cuda passed: no rerun"
fi

# ---------------------------------------------------------------- 2. the tutorial step against torch eager, float32
TS_SUM='^SUMMARY|^minigrad |^torch|^machine'
run_phase train_step train_step.log 90 "$TS_SUM" "$PY" benchmarks/train_step.py --device "$BENCH_DEV" "${TS_SIZE[@]}"

# ---------------------------------------------------------------- 3. a real run on tinyshakespeare, then generation
TRAIN_KEY='^step [0-9]+:|^done:|^error|interrupted|^corpus|^model:'
if [ -n "$DATA" ]; then
    run_phase train train.log 150 "$TRAIN_KEY" "${CUDA_PY[@]}" -m tinygpt.train --device cuda "${COMMON[@]}" \
        "${RUN_SIZE[@]}" --max-steps "$TRAIN_STEPS" --eval-interval "$EVAL" --out "$RUNS/float32"
    run_phase generate train.log 45 '.' "${CUDA_PY[@]}" -m tinygpt.generate --run "$RUNS/float32" --device cuda \
        --prompt "ROMEO:" --max-new-tokens "$GEN_TOKENS" --seed 1 --num-samples 2
else
    skip train train.log "no tinyshakespeare.txt (tools/gpu_check.sh --prepare, and carry $DATA_DIR)"
    skip generate train.log "no run to generate from"
fi

# ---------------------------------------------------------------- 4. nanoGPT's baby GPT benchmark against torch
if [ "$BABY_DEVICE" = 1 ] && [ -n "$DATA" ]; then
    run_phase baby_gpt baby_gpt.log 120 '^SUMMARY|^device:|^(minigrad|torch) +[0-9]' \
        "$PY" benchmarks/baby_gpt.py --device "$BENCH_DEV" --data "$DATA" "${BABY_SIZE[@]}"
else
    skip baby_gpt baby_gpt.log "benchmarks/baby_gpt.py has no --device option (CPU only), or no data"
fi

# ---------------------------------------------------------------- 5. bfloat16 and float16
for dt in bfloat16 float16; do
    if [ "$TS_DTYPE" = 1 ]; then
        run_phase "train_step_$dt" train_step.log 75 "$TS_SUM" \
            "$PY" benchmarks/train_step.py --device "$BENCH_DEV" --dtype "$dt" "${TS_SIZE[@]}"
    else
        skip "train_step_$dt" train_step.log "benchmarks/train_step.py has no --dtype $dt"
    fi
done
for dt in bfloat16 float16; do
    if [ "$TRAIN_DTYPE" = 1 ] && [ -n "$DATA" ]; then
        run_phase "train_$dt" train.log 90 "$TRAIN_KEY" "${CUDA_PY[@]}" -m tinygpt.train --device cuda --dtype "$dt" \
            "${COMMON[@]}" "${RUN_SIZE[@]}" --max-steps "$LOW_STEPS" --eval-interval "$LOW_EVAL" --out "$RUNS/$dt"
    else
        skip "train_$dt" train.log "tinygpt.train has no --dtype $dt, or no data"
    fi
done

# ---------------------------------------------------------------- 6. data parallel through NCCL at world size 1
NCCL_KEY='nccl-probe|Init COMPLETE|ncclCommInitRank|^done:|^error|SUMMARY compare|one-rank'
NCCL_RUN=(-m tinygpt.train --device cuda --dist "$DIST" "${COMMON[@]}" "${RUN_SIZE[@]}" --max-steps "$NCCL_STEPS"
          --eval-interval "$NCCL_STEPS")
if [ "$REHEARSE" = 1 ]; then
    skip nccl_probe nccl.log "needs a GPU"
else
    run_phase nccl_probe nccl.log 30 "$NCCL_KEY" env NCCL_DEBUG=INFO "$PY" tools/gpu_check.py nccl-probe
fi
NCCL_RC=1
if [ -n "$DATA" ] && [ "$MPI_OK" = 1 ]; then  # the real launcher when there is one (mpiexec -n 1), else singleton MPI
    run_phase nccl_train nccl.log 60 "$NCCL_KEY" env NCCL_DEBUG=INFO "${MPIEXEC[@]}" \
        "${CUDA_PY[@]}" "${NCCL_RUN[@]}" --out "$RUNS/nccl"
    NCCL_RC=$?
else
    skip nccl_train nccl.log "mpi4py finds no MPI library here, or no data: see nccl_shim"
fi
if [ -n "$DATA" ] && { [ "$NCCL_RC" != 0 ] || [ "$REHEARSE" = 1 ]; }; then  # MPI's calls answered in-process, NCCL real
    run_phase nccl_shim nccl.log 90 "$NCCL_KEY" env NCCL_DEBUG=INFO \
        "$PY" tools/gpu_check.py $([ "$REHEARSE" = 1 ] && echo --standin) --one-rank-mpi run "${NCCL_RUN[@]}" \
        --out "$RUNS/nccl_shim"
fi
for r in nccl nccl_shim; do
    if [ -f "$RUNS/$r/metrics.jsonl" ] && [ -f "$RUNS/float32/metrics.jsonl" ]; then
        run_phase "compare_$r" nccl.log 20 "$NCCL_KEY" "$PY" tools/gpu_check.py compare "$RUNS/float32" "$RUNS/$r" \
            --steps "$NCCL_STEPS"
    fi
done

# ---------------------------------------------------------------- 7. peak GPU memory per dtype, and a profile
DTYPES=float32$([ "$TS_DTYPE" = 1 ] && echo ,bfloat16,float16)
if [ "$MEM_DEVICE" = 1 ] && [ "$REHEARSE" = 0 ]; then
    run_phase memory memory_profile.log 90 '^SUMMARY' "$PY" benchmarks/memory.py --device cuda --steps 3 \
        --growth-steps 50 --dtype "$DTYPES"
else
    run_phase memory memory_profile.log 90 '^SUMMARY' "${HELPER[@]}" memory --device cuda --dtypes "$DTYPES" "${HELPER_SIZE[@]}"
fi
run_phase profile memory_profile.log 90 '^SUMMARY|kernel launches|^ops. total' "${HELPER[@]}" profile --device cuda "${HELPER_SIZE[@]}"

# ---------------------------------------------------------------- 8. nanoGPT's char-level recipe, as in the README
if [ -n "$DATA" ]; then
    run_phase char_run train.log 180 "$TRAIN_KEY" "${CUDA_PY[@]}" -m tinygpt.train --device cuda --preset shakespeare-char \
        "${COMMON[@]}" --batch-size $([ "$REHEARSE" = 1 ] && echo 2 || echo 12) --max-steps "$CHAR_STEPS" --lr 1e-3 \
        --min-lr 1e-4 --lr-schedule cosine --warmup-steps 100 --beta2 0.99 --weight-decay 0.1 \
        --eval-interval "$CHAR_EVAL" --eval-batches "$CHAR_EVAL_BATCHES" --sample-tokens 40 --out "$RUNS/char"
    [ -f "$RUNS/char/model.safetensors" ] && run_phase generate_char train.log 45 '.' "${CUDA_PY[@]}" -m tinygpt.generate \
        --run "$RUNS/char" --device cuda --prompt "ROMEO:" --max-new-tokens $((GEN_TOKENS * 2)) --seed 1
fi

# ---------------------------------------------------------------- 9. torch.compile, if time is left
if [ "$TS_COMPILE" = 1 ] && [ "$REHEARSE" = 0 ]; then
    run_phase compile train_step.log 150 "$TS_SUM" "$PY" benchmarks/train_step.py --device cuda --compile --steps 20 --run 4
else
    skip compile train_step.log "GPU only (torch.compile on the CPU needs minutes)"
fi

# ---------------------------------------------------------------- the summary
tally() { local n=0 s; for s in $COUNTS; do [ "$s" = "$1" ] && n=$((n + 1)); done; echo "$n"; }
{
    echo
    echo "== done in $(($(date +%s) - START)) s (budget ${BUDGET} s): $(tally PASS) PASS, $(tally FAIL) FAIL, $(tally TIMEOUT) TIMEOUT, $(tally SKIP) SKIP"
} >>"$SUMMARY"
echo
echo "=================================== SUMMARY ($OUTDIR/summary.txt)"
cat "$SUMMARY"
echo
echo "files: $(cd "$OUTDIR" && ls | paste -sd' ' -)"
[ "$(tally FAIL)$(tally TIMEOUT)" = 00 ] || exit 1
exit 0
