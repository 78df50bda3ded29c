#!/usr/bin/env bash
# The GPU check of jaxconvt: one prepared run of under 8 minutes on a lent machine with one
# NVIDIA GPU (H100/H200, 16 cores, no network), from a fresh copy of the repository tree.
#
# Usage, at the repository root:
#   bash benchmarks/device.sh              # on the GPU machine; results into $OUT
#   bash benchmarks/device.sh --dry-run    # print the plan (commands, time budgets) and exit
#   bash benchmarks/device.sh --allow-cpu  # run where JAX has no GPU (to test this script)
#
# Steps, each under `timeout`, the whole run under DEVICE_SH_BUDGET_S = 460 s (planned
# seconds in brackets; a step that ends early leaves its time to the later ones):
#   1. the GPU, driver, Python, jax, jaxlib, numpy, torch, CUDA and cuDNN versions       [~10]
#   2. python -m jaxconvt check --cases 30: the op against the numpy reference at JAX's
#      default precision, as a user runs it (TF32 may miss float32's 1e-5 there); its
#      status is reported, not the script's                                               [40]
#   3. pytest on the GPU-relevant test files (below), 8 xdist workers sharing the GPU, at
#      JAX_DEFAULT_MATMUL_PRECISION=highest (the tolerances assume true float32); at the
#      budget SIGINT stops it with its report                                           [150]
#   4. python -m jaxconvt bench --sizes gpu --dtype float32,bfloat16 --repeats 5 (JAX's
#      default precision, against lax autodiff and torch on CUDA) in three parts, so that
#      a part stopped at its budget loses only itself                           [95 + 65 + 75]
#   5. the parts merged into bench/results-gpu.json and rendered into bench/README.md (the
#      gpu block only) and bench/results-gpu.png                                          [~5]
#
# Output in $OUT: device.log (all of the above), tests.xml (JUnit), bench/results-gpu.json,
# bench/results-gpu.png, bench/README.md (bench/part<N>/ instead where merging failed). To
# put the table into the repository: python -m jaxconvt bench --render results-gpu.json
# --out benchmarks --markdown benchmarks/README.md.
#
# Exit status: 1 when a test failed; 2 when the machine lacks what the run needs (python,
# jax, a GPU, pytest), with a message saying what; else 0, also when a step ran out of its
# budget or the bench parts did not merge (the log says so).
#
# Environment: OUT (output folder; default a new temporary one); PYTHON (default python3, on
# the lent machine the one that holds jax with CUDA, torch and pytest). Wheels in .whl/ (how
# packages reach a machine without network) are installed into /tmp first. To test this
# script: DEVICE_SH_BUDGET_S, DEVICE_SH_CHECK_CASES, DEVICE_SH_TESTS (test paths),
# DEVICE_SH_XDIST (workers), DEVICE_SH_PARTS (workload lists, ';' between parts),
# DEVICE_SH_PART_BUDGETS (seconds per part), DEVICE_SH_SIZES, DEVICE_SH_REPEATS.

set -uo pipefail

DRY=0
ALLOW_CPU=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        --allow-cpu) ALLOW_CPU=1 ;;
        -h | --help)
            sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "device.sh: unknown argument '$arg' (--dry-run, --allow-cpu, --help)" >&2
            exit 2
            ;;
    esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/jaxconvt-device.XXXXXX")}
PY=${PYTHON:-python3}

BUDGET_S=${DEVICE_SH_BUDGET_S:-460}
CHECK_CASES=${DEVICE_SH_CHECK_CASES:-30}
XDIST=${DEVICE_SH_XDIST:-8}
SIZES=${DEVICE_SH_SIZES:-gpu}
REPEATS=${DEVICE_SH_REPEATS:-5}
# GPU-relevant tests, most important first: what reaches XLA off CPU, non-finite values through
# the GPU's convolutions, gradients of every order, the forms against each other, dtypes, the
# value grid against the reference (float64: 2 of its 8 chunks), then the transformations.
DEFAULT_TESTS="tests/test_export_platforms.py tests/test_nonfinite.py tests/test_grad.py tests/test_algorithms.py \
tests/test_dtypes.py tests/test_reference_grid.py tests/test_jvp.py tests/test_vmap.py tests/test_transpose.py \
tests/test_jit.py"
read -r -a TESTS <<<"${DEVICE_SH_TESTS:-$DEFAULT_TESTS}"
# test_choose_dot_for_bfloat16_on_cpu lowers on the default device and expects the CPU's "dot"
# form there (no convolution): it assumes a CPU backend (tests/test_export_platforms.py checks
# the same choice per platform).
DESELECT=(--deselect "tests/test_algorithms.py::test_choose_dot_for_bfloat16_on_cpu")
for chunk in 2 3 4 5 6 7; do
    DESELECT+=(--deselect "tests/test_reference_grid.py::test_random_grid_against_reference[float64-$chunk]")
done
# The bench in three parts: the headline 2-D/1-D/3-D layers; the small and odd ones; unet3d at
# its real size (1 GB input, 4 GB cotangent: most of its time is making and comparing them).
# unet3d_aniso (the same sizes again) is left out for time.
IFS=';' read -r -a PARTS <<<"${DEVICE_SH_PARTS:-dcgan2d,unet2d,hifigan1d,vae2d_bf16,vae3d_k3;grouped2d,per_example,bigvgan,audio_vae,istft,extreme;unet3d}"
read -r -a PART_BUDGETS <<<"${DEVICE_SH_PART_BUDGETS:-95 65 75}"

STEPS=() # "name|status|seconds" per step, for the summary
PYTEST_OPTS=()
TORCH_FLAG=()
BACKEND=unknown
TEST_FAILED=0
MERGE_FAILED=0

die() {
    if ((DRY)); then
        echo "[dry-run] the run would stop here: $*"
        return 1
    fi
    echo "device.sh: $*" >&2
    exit 2
}

DRY_SPENT=0 # --dry-run: the seconds the steps would take at most (each its whole budget)
remaining() { echo $((BUDGET_S - SECONDS - DRY_SPENT)); }

# step_budget CAP: CAP seconds, or less: what is left of the run after RESERVE seconds (kept
# for the later steps and the summary).
step_budget() {
    local cap=$1 left=$(($(remaining) - ${RESERVE:-15}))
    echo $((left < cap ? left : cap))
}

# run_step NAME CAP CMD...: runs CMD under timeout for step_budget CAP seconds (SIGNAL, default
# TERM, then KILL 15 s later); records its status. Returns CMD's status.
run_step() {
    local name=$1 budget
    budget=$(step_budget "$2")
    shift 2
    if ((DRY)); then
        printf '[dry-run] %-14s timeout %4ss: %s\n' "$name" "$budget" "$*"
        STEPS+=("$name|dry-run (at most)|$budget")
        DRY_SPENT=$((DRY_SPENT + budget))
        return 0
    fi
    if ((budget < 10)); then
        echo "=== $name: skipped, $(remaining)s left of the run's ${BUDGET_S}s"
        STEPS+=("$name|skipped (no time left)|0")
        return 124
    fi
    echo "=== $name (budget ${budget}s): $*"
    local start=$SECONDS rc
    timeout -s "${SIGNAL:-TERM}" -k 15 "$budget" "$@"
    rc=$?
    local status="ok"
    ((rc == 124 || rc == 137)) && status="stopped at its ${budget}s budget"
    ((rc != 0 && rc != 124 && rc != 137)) && status="exit $rc"
    STEPS+=("$name|$status|$((SECONDS - start))")
    echo "=== $name: $status after $((SECONDS - start))s"
    return "$rc"
}

setup() {
    command -v "$PY" >/dev/null 2>&1 || die "no Python interpreter '$PY' (set PYTHON)"
    command -v timeout >/dev/null 2>&1 || die "no 'timeout' command (coreutils)"
    if compgen -G ".whl/*.whl" >/dev/null; then
        echo "installing the carried wheels from .whl/ into /tmp/jaxconvt-site"
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/jaxconvt-site .whl/*.whl || die "the wheels in .whl/ did not install"
        export PYTHONPATH="/tmp/jaxconvt-site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" # jaxconvt and tests/ from this tree
    export PYTHONUNBUFFERED=1 MPLCONFIGDIR=/tmp/jaxconvt-mpl
    # One probe for everything the run depends on (each python start with jax costs seconds).
    local probe
    probe=$(XLA_PYTHON_CLIENT_PREALLOCATE=false "$PY" - <<'EOF'
import importlib.util
import os

def has(name):
    return importlib.util.find_spec(name) is not None

print("jax", int(has("jax") and has("jaxlib") and has("numpy")))
try:
    import jax

    import jaxconvt
except Exception as err:  # reported by the shell
    print("error", type(err).__name__, str(err).replace("\n", " ")[:200])
    raise SystemExit(0)
print("root", os.path.dirname(os.path.dirname(os.path.abspath(jaxconvt.__file__))))
print("backend", jax.default_backend())
print("pytest", int(has("pytest")), "xdist", int(has("xdist")))
try:
    import torch
except Exception:
    print("torch missing")
else:
    print("torch", "cuda" if torch.cuda.is_available() else "cpu")
EOF
    )
    field() { echo "$probe" | awk -v key="$1" -v n="${2:-2}" '$1 == key { print $n }'; }
    [[ -z "$(field error)" ]] || die "'$PY' cannot import jax and jaxconvt: $(echo "$probe" | grep -e '^error')"
    [[ "$(field jax)" == 1 ]] ||
        die "'$PY' cannot import jax, jaxlib and numpy; on the lent GPU machine python3 holds them"
    [[ "$(field root)" == "$ROOT" ]] || die "jaxconvt imports from '$(field root)', not from this tree $ROOT"
    BACKEND=$(field backend)
    if [[ "$BACKEND" != "gpu" ]]; then
        ((ALLOW_CPU)) || die "JAX's backend is '$BACKEND', not 'gpu': no CUDA plugin for jax, or no GPU visible
(this script is for the lent GPU machine; --allow-cpu runs it anyway, to test it)"
        echo "note: JAX's backend is '$BACKEND' (--allow-cpu)"
    fi
    [[ "$(field pytest)" == 1 ]] || die "'$PY' cannot import pytest"
    # torch only where it runs on JAX's device: torch on CPU at gpu sizes would take minutes.
    TORCH=$(field torch)
    if [[ "$TORCH" != "cuda" && "$TORCH" != "cpu" ]]; then
        echo "note: torch is not installed: the bench runs without its PyTorch baseline"
        TORCH_FLAG=(--no-torch)
    elif [[ "$BACKEND" == "gpu" && "$TORCH" != "cuda" ]]; then
        echo "note: torch cannot use CUDA here: the bench runs without its PyTorch baseline"
        TORCH_FLAG=(--no-torch)
    fi
    local path found=()
    for path in "${TESTS[@]}"; do # a test file renamed since this list was written: said, not fatal
        if [[ -e "${path%%::*}" ]]; then found+=("$path"); else echo "WARNING: no test file $path"; fi
    done
    ((${#found[@]})) || die "none of the test files exists: ${TESTS[*]}"
    TESTS=("${found[@]}")
    PYTEST_OPTS=(-q -p no:cacheprovider -rfE --durations=25 --junitxml="$OUT/tests.xml")
    if [[ "$(field pytest 4)" == 1 ]] && ((XDIST > 1)); then
        PYTEST_OPTS+=(-n "$XDIST" --dist load)
    fi
}

machine() {
    echo "=== machine"
    date -u "+%Y-%m-%d %H:%M UTC"
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit --format=csv 2>&1
    else
        echo "nvidia-smi: not found"
    fi
    echo "cpu: $(nproc) cores; $(uname -srm)"
    XLA_PYTHON_CLIENT_PREALLOCATE=false "$PY" - <<'EOF'
import importlib.metadata as md
import platform
import sys

import jax
import jaxlib
import numpy

print(f"python {platform.python_version()} ({sys.executable})")
print(f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, numpy {numpy.__version__}")
plugins = sorted(
    f"{d.metadata['Name']} {d.version}" for d in md.distributions() if d.metadata["Name"].startswith("jax-cuda")
)
print("jax plugins:", ", ".join(plugins) or "none")
print("jax devices:", ", ".join(f"{d.platform}:{d.device_kind}" for d in jax.devices()))
try:
    import torch
except ImportError:
    print("torch: not installed")
else:
    cuda = torch.cuda.is_available()
    name = torch.cuda.get_device_name(0) if cuda else "-"
    cudnn = torch.backends.cudnn.version() if cuda else "-"
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {cudnn}, device {name}")
for name in ("pytest", "pytest-xdist", "pytest-timeout", "hypothesis", "matplotlib", "flatbuffers"):
    try:
        print(f"{name} {md.version(name)}", end="; ")
    except md.PackageNotFoundError:
        print(f"{name} missing", end="; ")
print()
EOF
}

tests() {
    rm -f "$OUT/tests.xml"
    # SIGINT at the budget: pytest stops (the running tests are not counted) and still writes its
    # report and tests.xml. Python ignores SIGINT when started with it ignored (a background
    # job), so the handler is set back first.
    SIGNAL=INT run_step "tests" 9999 env JAX_DEFAULT_MATMUL_PRECISION=highest XLA_PYTHON_CLIENT_PREALLOCATE=false \
        "$PY" -c 'import signal, sys, pytest; signal.signal(signal.SIGINT, signal.default_int_handler); sys.exit(pytest.main(sys.argv[1:]))' \
        "${PYTEST_OPTS[@]}" "${DESELECT[@]}" "${TESTS[@]}"
    local rc=$?
    ((DRY)) && return 0
    local counts
    if counts=$("$PY" - "$OUT/tests.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET

root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
total = sum(int(s.get(k, 0)) for s in suites for k in ("tests",))
bad = sum(int(s.get(k, 0)) for s in suites for k in ("failures", "errors"))
skipped = sum(int(s.get("skipped", 0)) for s in suites)
print(total, bad, skipped)
EOF
    ); then
        read -r total bad skipped <<<"$counts"
        echo "tests: $total run, $bad failed or errors, $skipped skipped (pytest exit $rc)"
        ((bad > 0)) && TEST_FAILED=1
    else
        echo "tests: no readable $OUT/tests.xml (pytest exit $rc)"
        ((rc != 124 && rc != 137)) && TEST_FAILED=1 # it ended on its own, without a report
    fi
    ((rc == 1 || rc == 3 || rc == 4)) && TEST_FAILED=1 # failures, internal error, usage error
    ((rc == 2 || rc == 124)) && echo "WARNING: the tests stopped at the time budget; tests.xml lists those that ran"
    return 0
}

bench() {
    local i j later
    for i in "${!PARTS[@]}"; do
        later=0 # the planned budgets of the parts after this one stay theirs; the rest is this part's
        for ((j = i + 1; j < ${#PARTS[@]}; j++)); do later=$((later + ${PART_BUDGETS[j]:-60})); done
        RESERVE=$((15 + later)) run_step "bench part $((i + 1))" 9999 \
            "$PY" -m jaxconvt bench --sizes "$SIZES" --dtype float32,bfloat16 --workloads "${PARTS[i]}" \
            --repeats "$REPEATS" --no-progress --no-layers "${TORCH_FLAG[@]}" --out "$OUT/bench/part$((i + 1))"
    done
    ((DRY)) && return 0
    echo "=== merging the bench parts"
    if "$PY" - "$OUT/bench" <<'EOF'
import json
import sys
from pathlib import Path

folder = Path(sys.argv[1])
parts = sorted(folder.glob("part*/results-*.json"))
if not parts:
    print("no bench part finished: nothing to merge")
    sys.exit(0)
reports = [json.loads(p.read_text()) for p in parts]
merged = dict(reports[0])
merged["results"] = [r for rep in reports for r in rep["results"]]
merged["wall_s"] = sum(rep.get("wall_s") or 0 for rep in reports)
merged["machine"] = dict(reports[0]["machine"], load_avg_end=reports[-1]["machine"].get("load_avg_end"))
merged["command"] = "benchmarks/device.sh: " + "; ".join(rep.get("command", "") for rep in reports)
name = f"results-{merged['machine']['platform']}.json"
(folder / name).write_text(json.dumps(merged, indent=1, allow_nan=False) + "\n")
print(f"merged {len(parts)} part(s), {len(merged['results'])} results, into {folder / name}")
EOF
    then
        local merged
        merged=$(compgen -G "$OUT/bench/results-*.json" | head -n 1)
        if [[ -n "$merged" ]]; then
            # rendering needs no GPU: JAX on CPU starts at once and takes no GPU memory
            if JAX_PLATFORMS=cpu "$PY" -m jaxconvt bench --render "$merged" --out "$OUT/bench" \
                --markdown "$OUT/bench/README.md"; then
                rm -rf "$OUT"/bench/part*
                echo "wrote $merged, $OUT/bench/README.md and the chart"
            else
                echo "rendering $merged failed: the parts stay in $OUT/bench/part*"
                MERGE_FAILED=1
            fi
        fi
    else
        echo "merging failed: the parts stay in $OUT/bench/part*"
        MERGE_FAILED=1
    fi
}

main() {
    echo "jaxconvt device run: $ROOT -> $OUT (budget ${BUDGET_S}s)"
    local bench_s=0 b
    for b in "${PART_BUDGETS[@]}"; do bench_s=$((bench_s + b)); done
    setup
    ((DRY)) || machine
    RESERVE=$((15 + 150 + bench_s)) run_step "check" 40 "$PY" -m jaxconvt check --cases "$CHECK_CASES" ||
        echo "note: the check's status is informative (JAX's default precision); the tests decide the exit status"
    RESERVE=$((15 + bench_s)) tests
    bench
    echo "=== summary (${SECONDS}s of ${BUDGET_S}s)"
    local step
    for step in "${STEPS[@]}"; do
        IFS='|' read -r name status secs <<<"$step"
        printf '  %-14s %-36s %4ss\n' "$name" "$status" "$secs"
    done
    if ((!DRY)); then
        echo "files in $OUT:"
        (cd "$OUT" && find . -type f | sort | sed 's|^\./|  |')
        local count
        count=$(find "$OUT" -type f | wc -l)
        ((count > 8)) && echo "WARNING: $count files; the device tool brings back at most 8"
    fi
    ((MERGE_FAILED)) && echo "WARNING: the bench parts were not merged (see the merging step)"
    if ((TEST_FAILED)); then
        echo "FAIL: a test failed (see the tests step and $OUT/tests.xml)"
        return 1
    fi
    echo "done"
    return 0
}

mkdir -p "$OUT/bench" || exit 2
if ((DRY)); then
    main
else
    main 2>&1 | tee "$OUT/device.log"
    exit "${PIPESTATUS[0]}"
fi
