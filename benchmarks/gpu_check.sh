#!/usr/bin/env bash
# One command for a GPU machine that has PyTorch and JAX but neither Keras nor TensorFlow,
# and no network: install the wheels brought along, run the tests that need a GPU
# (pytest -m gpu) and benchmarks/epoch.py under JAX and under PyTorch, and write every
# figure into one JSON file.  Under 8 minutes (each step has its share of the time; a
# step cut short keeps what it measured and says so).
#
#     bash benchmarks/gpu_check.sh WHEELS [OUT.json]            # default OUT: gpu_check.json
#     bash benchmarks/gpu_check.sh --dry-run WHEELS [OUT.json]  # a CPU: small sizes, no GPU asked
#
# WHEELS is a folder of wheels of what the machine lacks, made beforehand on a machine with
# a network, for the GPU machine's Python (3.12) and platform:
#
#     grep -v '^tensorflow' requirements.txt > /tmp/needs.txt
#     pip download -d WHEELS --only-binary=:all: --python-version 3.12 \
#         --platform manylinux2014_x86_64 -r /tmp/needs.txt pytest hypothesis
#
# Run from anywhere; it works in the repository that holds it, in a virtual environment
# of its own (.venv-gpu, seeing the machine's torch and jax) that it creates once, or in
# the one GPU_CHECK_VENV names.
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
deadline=$((SECONDS + 470))  # 7 min 50 s
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ "$dry_run" = 1 ]; then
    images=512 epochs=2 policies="float32" torch_jit="off"
else
    images=10240 epochs=3 policies="float32 mixed_float16" torch_jit="off on"
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
grep -v '^tensorflow' requirements.txt > "$work/needs.txt"
venv=${GPU_CHECK_VENV:-.venv-gpu}
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv --system-site-packages "$venv"
fi
within 120 "$venv/bin/python" -m pip install --quiet --no-index --find-links "$wheels" \
    -r "$work/needs.txt" pytest hypothesis > "$work/install.log" 2>&1
status=$?
note install "$status" $((SECONDS - start)) "$work/install.log"
python=$venv/bin/python

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
        KERAS_BACKEND=$backend within 150 "$python" benchmarks/epoch.py --images "$images" \
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
