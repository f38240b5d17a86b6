#!/usr/bin/env bash
# One command for a GPU machine that has PyTorch and JAX but neither Keras nor TensorFlow,
# and no network: install the wheels brought along, run the tests that need a GPU
# (pytest -m gpu) and benchmarks/epoch.py under JAX and under PyTorch (float32,
# mixed_float16 and mixed_bfloat16), and write every figure into one JSON file.  Under
# 10 minutes (each step has its share of the time; a step cut short keeps what it
# measured and says so).
#
#     bash benchmarks/gpu_check.sh WHEELS [OUT.json]            # default OUT: gpu_check.json
#     bash benchmarks/gpu_check.sh --dry-run WHEELS [OUT.json]  # a CPU: small sizes, no GPU asked
#
# The Python is $PYTHON (default python3), the one that holds the machine's torch and jax:
# often itself the interpreter of a virtual environment (a venv made from it would see
# its base Python's packages, not that environment's).  Of the wheels in WHEELS, those of
# distributions that Python lacks are installed, without their dependencies, into a folder
# of this run put first on PYTHONPATH: nothing the machine has is replaced or shadowed.
# WHEELS is made beforehand on a machine with a network, for the GPU machine's Python
# (3.12) and platform; what a machine holding torch, jax, numpy, scipy, matplotlib, h5py,
# pytest and hypothesis lacks is Keras and two of its needs (a few MB):
#
#     pip download -d WHEELS --no-deps --only-binary=:all: --python-version 3.12 \
#         --implementation cp --platform manylinux_2_28_x86_64 \
#         --platform manylinux_2_17_x86_64 "keras>=3.15,<3.16" namex optree
#
# (for a bare machine: without --no-deps, with -r requirements.txt less tensorflow, pytest
# and hypothesis).  GPU_CHECK_VENV names a virtual environment to install every wheel into
# instead (made with --system-site-packages from $PYTHON if it does not exist).
# Run from anywhere; it works in the repository that holds it.
set -uo pipefail

dry_run=0
if [ "${1:-}" = "--dry-run" ]; then dry_run=1; shift; fi
if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    echo "usage: bash benchmarks/gpu_check.sh [--dry-run] WHEELS [OUT.json] (WHEELS: a folder of wheels)" >&2
    exit 2
fi
wheels=$(cd "$1" && pwd)
out=$(realpath -m "${2:-gpu_check.json}")
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
deadline=$((SECONDS + 570))  # 9 min 30 s
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ "$dry_run" = 1 ]; then
    images=128 epochs=2 policies="float32 mixed_bfloat16" torch_jit="off"
else
    images=10240 epochs=3 policies="float32 mixed_float16 mixed_bfloat16" torch_jit="off on"
fi

steps=()  # one JSON object per step
note() {  # note NAME STATUS SECONDS [LOG]: a step's outcome, with the last lines of its log
    local tail=""
    [ -n "${4:-}" ] && tail=$(tail -n 15 "$4")
    steps+=("$("$python" -c 'import json, sys
name, status, seconds, tail = sys.argv[1:5]
print(json.dumps({"step": name, "exit": int(status), "seconds": int(seconds),
                  "timed_out": status in ("124", "137"), "log_tail": tail}))' \
        "$1" "$2" "$3" "$tail")")
}
within() {  # within SECONDS COMMAND...: at most SECONDS, and never past the deadline
    local limit=$1 left=$((deadline - SECONDS))
    shift
    [ "$left" -lt "$limit" ] && limit=$left
    [ "$limit" -lt 5 ] && return 124
    timeout --kill-after=10 "$limit" "$@"
}

echo "[gpu_check] installing from $wheels" >&2
start=$SECONDS
if [ -n "${GPU_CHECK_VENV:-}" ]; then
    grep -v '^tensorflow' requirements.txt > "$work/needs.txt"
    venv=$GPU_CHECK_VENV
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -m venv --system-site-packages "$venv"
    fi
    within 120 "$venv/bin/python" -m pip install --quiet --no-index --find-links "$wheels" \
        -r "$work/needs.txt" pytest hypothesis > "$work/install.log" 2>&1
    status=$?
    python=$venv/bin/python
else
    # The wheels of distributions this Python lacks (a wheel's name starts with its
    # distribution's).
    missing=$("$python" -c 'import sys
from importlib import metadata
from pathlib import Path
for wheel in sorted(Path(sys.argv[1]).glob("*.whl")):
    try:
        metadata.distribution(wheel.name.split("-")[0])
    except metadata.PackageNotFoundError:
        print(wheel)' "$wheels")
    site=$work/site
    echo "[gpu_check] installing into $site: ${missing:-nothing}" > "$work/install.log"
    status=0
    if [ -n "$missing" ]; then
        # shellcheck disable=SC2086  # one wheel per word
        within 120 "$python" -m pip install --quiet --no-index --no-deps --no-compile \
            --target "$site" $missing >> "$work/install.log" 2>&1
        status=$?
    fi
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
    if [ "$status" = 0 ]; then
        # (importing Keras would start its default backend, TensorFlow, which is not here)
        "$python" -c "import importlib.util as u, optree, pytest, hypothesis
assert u.find_spec('keras'), 'no keras'" >> "$work/install.log" 2>&1
        status=$?
    fi
fi
note install "$status" $((SECONDS - start)) "$work/install.log"

if [ "$status" = 0 ]; then
    for backend in jax torch; do
        if ! "$python" -c "import $backend" 2>/dev/null; then
            note "$backend" 1 0
            echo "[gpu_check] $backend is not installed here: skipped" >&2
            continue
        fi
        echo "[gpu_check] $backend: tests that need a GPU" >&2
        start=$SECONDS
        KERAS_BACKEND=$backend within 75 "$python" -m pytest -q -p no:cacheprovider -m gpu -rs \
            > "$work/tests_$backend.log" 2>&1
        note "tests $backend" $? $((SECONDS - start)) "$work/tests_$backend.log"

        echo "[gpu_check] $backend: benchmarks/epoch.py" >&2
        jit="on"  # on JAX, off would be eager execution, op by op
        [ "$backend" = torch ] && jit=$torch_jit
        start=$SECONDS
        # shellcheck disable=SC2086  # the lists split into arguments
        KERAS_BACKEND=$backend within 190 "$python" benchmarks/epoch.py --images "$images" \
            --epochs "$epochs" --policies $policies --jit $jit \
            --json "$work/epoch_$backend.json" > "$work/epoch_$backend.log" 2>&1
        note "epoch.py $backend" $? $((SECONDS - start)) "$work/epoch_$backend.log"
    done
fi

"$python" - "$out" "$work" "$dry_run" "${steps[@]}" <<'EOF'
import json, os, platform, subprocess, sys
from pathlib import Path

out, work, dry_run, *steps = sys.argv[1:]
epoch = {}
for backend in ("jax", "torch"):
    path = Path(work) / f"epoch_{backend}.json"
    if path.exists():
        epoch[backend] = json.loads(path.read_text())
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                          "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
except OSError:
    gpu = None
result = {"dry_run": dry_run == "1", "gpu": gpu or None, "python": platform.python_version(),
          "steps": [json.loads(step) for step in steps], "epoch": epoch}
Path(out + ".partial").write_text(json.dumps(result, indent=2) + "\n")
os.replace(out + ".partial", out)
failed = [s["step"] for s in result["steps"] if s["exit"] != 0]
print(f"[gpu_check] {out}: {len(result['steps'])} steps"
      + (f", failed or cut short: {', '.join(failed)}" if failed else ", all passed"),
      file=sys.stderr)
sys.exit(1 if failed else 0)
EOF
