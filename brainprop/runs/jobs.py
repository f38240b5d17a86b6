"""Many runs at once: processes on this machine, or one SLURM job array via submitit.

A run is `main.py`'s command line (`PlannedRun.argv`), the stem its files take and a log file.
Every run is its own process, started as

    python -m brainprop.runs.jobs CORES ARGV...

which pins itself to CORES (a comma-separated list, or `-` to keep what it was given)
before the backend starts, so each backend sizes its thread pools to its share of the
cores, then runs `main.py ARGV` (plus `--resume` when an interrupted run of the same stem
waits in the output folder).  Nothing here knows what a run computes.

* `run_locally`: N processes at once; GPUs handed out round-robin through
  `CUDA_VISIBLE_DEVICES` (several runs may share one, each taking only the memory it
  uses), the CPU cores shared out between the processes otherwise.  A failing run never
  stops the others.
* `submit_to_slurm` / `wait_for_slurm`: one task of a job array per run.  A task that
  SLURM signals before a time limit or pre-emption stops its run at the end of the
  current batch (the run's backup holds every completed epoch) and is requeued; the
  requeued task resumes it, so it ends as an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from brainprop.runs.outputs import RunFiles, find_unfinished, run_holder
from brainprop.utils import signals
from brainprop.utils.errors import BrainPropError, one_line

# Each process takes only the GPU memory it uses, so several runs can share one GPU:
# JAX preallocates 75% of it and TensorFlow all of it otherwise.
SHARED_GPU_ENVIRONMENT = {
    "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
    "TF_FORCE_GPU_ALLOW_GROWTH": "true",
}

# The package's parent folder, so that children import this very copy of brainprop.
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One run: main.py's arguments, the stem of its files, where its output goes."""

    name: str  # the stem of its files in output_dir, e.g. MNIST_dense_EBP_seed1
    argv: tuple[str, ...]  # main.py's arguments, without --resume
    output_dir: Path  # main.py's --output-dir
    log: Path  # stdout and stderr of every attempt, appended
    kind: str = ""  # runs of one kind take about as long (for the estimate)

    def main_argv(self) -> list[str]:
        """main.py's arguments now: `--resume` when an unfinished run waits."""
        try:
            find_unfinished(Path(self.output_dir), self.name)
        except BrainPropError:
            return list(self.argv)
        return [*self.argv, "--resume"]

    def trained_by(self) -> str | None:
        """Who trains this run right now, when another process does (`process 1234`):
        a process that holds its unfinished run, such as one left by a driver that was
        killed."""
        try:
            files = find_unfinished(Path(self.output_dir), self.name)
        except BrainPropError:
            return None
        held = run_holder(files)
        if held is None:
            return None
        return f"process {held.pid}" if held.pid else "another process"

    def finished(self) -> bool:
        """Whether the run is complete: its summary written and no backup left to resume."""
        try:
            find_unfinished(Path(self.output_dir), self.name)
        except BrainPropError:
            return RunFiles(Path(self.output_dir) / self.name).summary.is_file()
        return False

    def command(self, cores: Sequence[int] | None = None) -> list[str]:
        where = ",".join(map(str, cores)) if cores else "-"
        return [sys.executable, "-u", "-m", "brainprop.runs.jobs", where, *self.main_argv()]


@dataclasses.dataclass(frozen=True)
class Failure:
    run: PlannedRun
    reason: str  # e.g. "exit status 1" or "killed by SIGKILL"

    def line(self) -> str:
        """`NAME failed (REASON): LAST LOG LINE (log: PATH)`."""
        return (f"{self.run.name} failed ({self.reason}): {_log_tail(self.run.log)} "
                f"(log: {self.run.log})")


def _log_tail(path: Path) -> str:
    """The last non-empty line of a log: usually the error."""
    try:
        with open(path, "rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - 4096))
            tail = file.read().decode(errors="replace")
    except OSError:
        return "no log"
    return one_line(tail, 300, last=True) or "empty log"


def _child_environment(gpu: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(SHARED_GPU_ENVIRONMENT)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def _exit_reason(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


# --- GPUs and cores -------------------------------------------------------------------


def visible_gpus() -> list[str]:
    """The GPUs this process may use, by the names CUDA_VISIBLE_DEVICES takes.

    Asks `nvidia-smi` (no backend is imported); honours a CUDA_VISIBLE_DEVICES already
    set.  No nvidia-smi, or one that fails, means no GPU.
    """
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def parse_gpus(text: str) -> list[str]:
    """`0,2,3` -> ["0", "2", "3"]; each must be one of `visible_gpus()`."""
    asked = [g.strip() for g in text.split(",")]
    if not all(asked) or len(set(asked)) != len(asked):
        raise BrainPropError(f"--gpus {text}: give GPU numbers once each, such as 0,2,3")
    there = visible_gpus()
    missing = [g for g in asked if g not in there]
    if missing:
        found = ", ".join(there) if there else "none (nvidia-smi finds no GPU)"
        raise BrainPropError(
            f"--gpus {text}: no GPU {', '.join(missing)} on this machine; GPUs here: {found}"
        )
    return asked


def share_cores(jobs: int, cores: Sequence[int] | None = None) -> list[list[int]]:
    """The cores of each of `jobs` processes: contiguous, disjoint, as even as can be.

    With more processes than cores, each takes one core and some cores are shared.
    """
    cores = sorted(os.sched_getaffinity(0) if cores is None else cores)
    if jobs >= len(cores):
        return [[cores[i % len(cores)]] for i in range(jobs)]
    shares, start = [], 0
    for i in range(jobs):
        size = len(cores) // jobs + (i < len(cores) % jobs)
        shares.append(cores[start:start + size])
        start += size
    return shares


# --- Progress -------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """`h:mm:ss`."""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class Progress:
    """Runs done, running, failed, stopped and left, and an estimate of the time left.

    A run left is priced at the mean time of this session's finished runs of its kind
    (of all finished runs when its kind has none yet); a running run at that less the
    time it has run; the sum is shared among the `jobs` processes.
    """

    def __init__(self, total: int, jobs: int = 1, done: int = 0):
        self.total, self.jobs = total, jobs
        self.done, self.failed, self.stopped = done, 0, 0
        self.started_at = time.monotonic()
        self.seconds: dict[str, list[float]] = {}
        self.running: dict[str, tuple[str, float]] = {}  # name -> (kind, started)

    def start(self, run: PlannedRun) -> None:
        self.running[run.name] = (run.kind, time.monotonic())

    def finished_elsewhere(self, run: PlannedRun) -> None:
        """Count `run`, which another process trained to its end, done (its time unknown)."""
        self.running.pop(run.name)
        self.done += 1

    def forget(self, run: PlannedRun) -> None:
        """No longer count `run` running: it waits to be started here."""
        self.running.pop(run.name)

    def finish(self, run: PlannedRun, ok: bool, stopped: bool = False) -> float:
        """Count `run` done (`ok`), stopped by a signal (`stopped`: it resumes) or failed."""
        kind, started = self.running.pop(run.name)
        seconds = time.monotonic() - started
        if ok:
            self.done += 1
            self.seconds.setdefault(kind, []).append(seconds)
        elif stopped:
            self.stopped += 1
        else:
            self.failed += 1
        return seconds

    @property
    def left(self) -> int:
        return self.total - self.done - self.failed - self.stopped - len(self.running)

    def _mean(self, kind: str) -> float:
        times = self.seconds.get(kind) or [s for t in self.seconds.values() for s in t]
        return sum(times) / len(times)

    def estimate_left(self, waiting_kinds: Sequence[str]) -> float | None:
        if not self.seconds:
            return None
        now = time.monotonic()
        work = sum(self._mean(k) for k in waiting_kinds) + sum(
            max(0.0, self._mean(k) - (now - started)) for k, started in self.running.values()
        )
        return work / self.jobs

    def line(self, waiting_kinds: Sequence[str] = ()) -> str:
        left = self.estimate_left(waiting_kinds)
        return (
            f"{self.done}/{self.total} runs done, {len(self.running)} running, "
            f"{self.failed} failed, "
            + (f"{self.stopped} stopped, " if self.stopped else "")
            + f"{self.left} left; "
            f"{format_duration(time.monotonic() - self.started_at)} elapsed, "
            + ("time left unknown until a run finishes" if left is None
               else f"about {format_duration(left)} left")
        )


class _Display:
    """The progress line: a tqdm bar in a terminal, plain lines in a log file."""

    def __init__(self, progress: Progress, prefix: str, stream=None):
        self.progress, self.prefix = progress, prefix
        self.stream = stream or sys.stderr
        self.bar = None
        if self.stream.isatty():
            self.bar = tqdm(total=progress.total, initial=progress.done, unit="run",
                            file=self.stream, dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {postfix}")

    def event(self, message: str, waiting_kinds: Sequence[str]) -> None:
        status = self.progress.line(waiting_kinds)
        if self.bar is None:
            print(f"{self.prefix} {status}; {message}", file=self.stream, flush=True)
            return
        self.bar.write(f"{self.prefix} {message}")
        self.bar.n = self.progress.done + self.progress.failed + self.progress.stopped
        self.bar.set_postfix_str(status, refresh=True)

    def tick(self, waiting_kinds: Sequence[str]) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(self.progress.line(waiting_kinds), refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --- One machine ------------------------------------------------------------------------


def run_locally(
    runs: Sequence[PlannedRun],
    jobs: int,
    gpus: Sequence[str] = (),
    *,
    prefix: str = "[jobs]",
    progress: Progress | None = None,
    poll_seconds: float = 0.5,
) -> list[Failure]:
    """Run every run, `jobs` at a time, each in its own process; the failures.

    Process k of the pool (its slot) uses GPU `gpus[k % len(gpus)]`, or, without GPUs,
    the k-th share of the cores.  A run that another process trains right now (one
    left running by a driver that was killed) is waited for, without a slot, and
    counted by how it ends: done when complete, else started here (and so resumed).
    Ctrl-C (or SIGTERM to this process) stops every run at the end of its batch (each
    keeps its backup for `--resume`), starts no more and stops waiting; a run that ends
    complete all the same counts as done.  KeyboardInterrupt then, unless every run was
    done (or failed) by the time they all ended.
    """
    if jobs < 1:
        raise BrainPropError(f"--jobs {jobs}: give 1 or more processes")
    progress = progress or Progress(len(runs), jobs)
    display = _Display(progress, prefix)
    cores = share_cores(jobs)
    waiting = list(runs)
    free_slots = list(range(jobs))
    running: dict[int, tuple[PlannedRun, subprocess.Popen, object]] = {}
    elsewhere: list[PlannedRun] = []  # trained by another process, waited for
    failures: list[Failure] = []
    stopping, stopped = None, 0

    signalled: set[int] = set()  # the processes a stop signal was passed on to

    def stop(signal_number, frame):
        nonlocal stopping
        stopping = signal_number
        for _, process, _ in running.values():  # a second signal stops them at once
            process.send_signal(signal_number)
            signalled.add(process.pid)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while ((waiting or elsewhere) and stopping is None) or running:
            while waiting and free_slots and stopping is None:
                run = waiting.pop(0)
                trainer = run.trained_by()
                if trainer is not None:
                    elsewhere.append(run)
                    progress.start(run)
                    display.event(f"waiting for {run.name}, which {trainer} is training "
                                  f"right now; log: {run.log}", [r.kind for r in waiting])
                    continue
                slot = free_slots.pop(0)
                gpu = gpus[slot % len(gpus)] if gpus else None
                run.log.parent.mkdir(parents=True, exist_ok=True)
                log = open(run.log, "ab")
                # Held: a signal now waits until the child is in `running` (so it is
                # passed on), and in the child until it can note it (`_child`).
                with signals.held():
                    process = subprocess.Popen(
                        run.command(None if gpus else cores[slot]), stdin=subprocess.DEVNULL,
                        stdout=log, stderr=subprocess.STDOUT, env=_child_environment(gpu),
                        start_new_session=True,  # Ctrl-C reaches them once, from here
                    )
                    running[slot] = (run, process, log)
                # Blocking holds a signal in this thread only: one another thread took
                # while the child started was handled before the child was in `running`.
                if stopping is not None and process.pid not in signalled:
                    process.send_signal(stopping)
                    signalled.add(process.pid)
                progress.start(run)
                where = f"GPU {gpu}" if gpu is not None else f"cores {_ranges(cores[slot])}"
                display.event(f"started {run.name} on {where}", [r.kind for r in waiting])
            time.sleep(poll_seconds)
            for run in [r for r in elsewhere if r.trained_by() is None]:
                elsewhere.remove(run)
                if run.finished():
                    progress.finished_elsewhere(run)
                    message = f"finished {run.name} (trained by another process)"
                else:  # stopped or crashed there: started here, resuming it
                    progress.forget(run)
                    waiting.insert(0, run)
                    message = f"{run.name} is no longer trained by another process"
                display.event(message, [r.kind for r in waiting])
            for slot, (run, process, log) in list(running.items()):
                status = process.poll()
                if status is None:
                    continue
                log.close()
                del running[slot]
                free_slots.append(slot)
                was_stopped = stopping is not None and status != 0
                stopped += was_stopped
                seconds = progress.finish(run, ok=status == 0, stopped=was_stopped)
                if status == 0:
                    message = f"finished {run.name} in {format_duration(seconds)}"
                elif was_stopped:
                    message = (f"stopped {run.name} ({_exit_reason(status)}); the same command "
                               f"resumes it; log: {run.log}")
                else:
                    failures.append(Failure(run, _exit_reason(status)))
                    message = f"FAILED {run.name} ({_exit_reason(status)}); log: {run.log}"
                display.event(message, [r.kind for r in waiting])
            display.tick([r.kind for r in waiting])
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        display.close()
    if stopping is not None and (waiting or elsewhere or stopped):
        raise KeyboardInterrupt
    return failures


def _ranges(cores: Sequence[int]) -> str:
    return ",".join(map(str, cores))


# --- SLURM ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    time_limit_min: int = 24 * 60
    gpus_per_run: int = 0
    cpus_per_run: int = 1
    array_parallelism: int | None = None
    signal_delay_s: int = 120  # how long before the time limit a task is told to stop


def _submitit():
    """submitit, imported without the logging set-up it does on import.

    That set-up (`logging.config.dictConfig`) closes every logging handler already
    installed, those of the program importing it included; its warnings still reach
    stderr through logging's last-resort handler.  Jobs on the cluster import it as usual.
    """
    if "submitit" not in sys.modules:
        previous = os.environ.get("SUBMITIT_LOG_LEVEL")
        os.environ["SUBMITIT_LOG_LEVEL"] = "NOCONFIG"
        try:
            importlib.import_module("submitit")
        finally:
            if previous is None:
                del os.environ["SUBMITIT_LOG_LEVEL"]
            else:
                os.environ["SUBMITIT_LOG_LEVEL"] = previous
    return importlib.import_module("submitit")


def check_slurm() -> None:
    """submitit importable and the SLURM commands on PATH, or a one-line error."""
    try:
        _submitit()
    except ImportError:
        raise BrainPropError(
            "--executor slurm needs submitit: pip install submitit"
        ) from None
    missing = [c for c in ("sbatch", "squeue", "scontrol") if shutil.which(c) is None]
    if missing:
        raise BrainPropError(
            f"--executor slurm: {', '.join(missing)} not found: run on a SLURM login node "
            "(or load its module), or drop --executor slurm"
        )


class SlurmTask:
    """One run as a submitit task: main.py in a child process, requeued when signalled.

    submitit calls `checkpoint` when SLURM sends the task its signal (before a time
    limit, or on pre-emption): the run is stopped at the end of its batch, which leaves
    its backup of every completed epoch, and the task is requeued as itself; the next
    attempt finds the backup and resumes (`PlannedRun.main_argv`).
    """

    def __init__(self, run: PlannedRun):
        self.run = run
        self._process: subprocess.Popen | None = None

    def __getstate__(self):
        return {"run": self.run}

    def __setstate__(self, state):
        self.run, self._process = state["run"], None

    def __call__(self) -> str:
        run = self.run
        run.log.parent.mkdir(parents=True, exist_ok=True)
        with open(run.log, "ab") as log:
            # The child ignores submitit's signal (SLURM sends it to every process of the
            # step); this process answers it by stopping the child with SIGTERM.
            with signals.held():  # a signal waits until the child can note it
                self._process = subprocess.Popen(
                    run.command(), stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, env=_child_environment(None),
                    preexec_fn=_ignore_preemption_signal,
                )
            status = self._wait()
        if status != 0:
            raise RuntimeError(f"{run.name}: main.py ended with {_exit_reason(status)}; "
                               f"log: {run.log}: {_log_tail(run.log)}")
        return run.name

    def _wait(self, timeout: float | None = None) -> int | None:
        """The child's exit status, or None if it still runs after `timeout` seconds.

        Reaped with a non-blocking waitpid, not Popen.wait, whose lock the signal handler
        (`checkpoint`) would wait on forever while this very thread holds it.
        """
        process = self._process
        deadline = None if timeout is None else time.monotonic() + timeout
        while process.returncode is None:
            try:
                pid, status = os.waitpid(process.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by the other caller of this method
                pid, status = process.pid, 0
            if pid:
                if process.returncode is None:
                    process.returncode = os.waitstatus_to_exitcode(status)
                break
            if deadline is not None and time.monotonic() > deadline:
                return None
            time.sleep(0.2)
        return process.returncode

    def checkpoint(self):
        submitit = _submitit()
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGTERM)  # stop at the end of this batch
            if self._wait(timeout=600) is None:
                self._process.kill()
        return submitit.helpers.DelayedSubmission(SlurmTask(self.run))


def _ignore_preemption_signal() -> None:
    signal.signal(getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")),
                  signal.SIG_IGN)


def slurm_executor(folder: Path, options: SlurmOptions):
    """A submitit executor for SLURM, its own logs under `folder`."""
    submitit = _submitit()

    executor = submitit.AutoExecutor(folder=folder / "%A", cluster="slurm")
    parameters = dict(
        timeout_min=options.time_limit_min,
        cpus_per_task=options.cpus_per_run,
        tasks_per_node=1,
        nodes=1,
        slurm_signal_delay_s=options.signal_delay_s,
        slurm_setup=[f"export PYTHONPATH={_PACKAGE_ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"],
        name="brainprop",
    )
    if options.gpus_per_run:
        parameters["gpus_per_node"] = options.gpus_per_run
    if options.partition:
        parameters["slurm_partition"] = options.partition
    if options.array_parallelism:
        parameters["slurm_array_parallelism"] = options.array_parallelism
    executor.update_parameters(**parameters)
    return executor


def submit_to_slurm(runs: Sequence[PlannedRun], folder: Path, options: SlurmOptions) -> list:
    """One job array, one task per run; its submitit jobs, in the order of `runs`."""
    executor = slurm_executor(folder, options)
    for run in runs:
        run.log.parent.mkdir(parents=True, exist_ok=True)
    with executor.batch():
        jobs = [executor.submit(SlurmTask(run)) for run in runs]
    return jobs


def array_id(jobs: Sequence) -> str:
    return str(jobs[0].job_id).split("_")[0]


def wait_for_slurm(
    runs: Sequence[PlannedRun],
    jobs: Sequence,
    *,
    prefix: str = "[jobs]",
    parallelism: int | None = None,
    poll_seconds: float = 5.0,
) -> list[Failure]:
    """Wait until every task has ended; the failures.

    A task has ended when submitit can read its result (or its error) back, or when it
    has left the queue without one (killed; `squeue` is asked, so no accounting is
    needed).
    """
    progress = Progress(len(runs), jobs=parallelism or len(runs))
    display = _Display(progress, prefix)
    pending = {job.job_id: (run, job) for run, job in zip(runs, jobs, strict=True)}
    failures: list[Failure] = []
    try:
        while pending:
            queued = queue_states(array_id(jobs))
            for job_id, (run, job) in list(pending.items()):
                state = queued.get(job_id)
                if run.name not in progress.running and state in ("RUNNING", "COMPLETING"):
                    progress.start(run)
                    display.event(f"{run.name} running as job {job_id}", [])
                result_ready = job.paths.result_pickle.exists()
                if not result_ready and state is not None:
                    continue
                del pending[job_id]
                if run.name not in progress.running:
                    progress.start(run)
                failure = None
                if not result_ready:
                    failure = Failure(run, f"SLURM job {job_id} ended without a result")
                else:
                    try:
                        job.result()
                    except Exception:  # submitit re-raises the task's error
                        failure = Failure(run, f"SLURM job {job_id}")
                progress.finish(run, ok=failure is None)
                if failure:
                    failures.append(failure)
                    display.event(f"FAILED {run.name}; log: {run.log}", [])
                else:
                    display.event(f"finished {run.name}", [])
            if pending:
                time.sleep(poll_seconds)
                display.tick([])
    finally:
        display.close()
    return failures


def queue_states(job_id: str) -> dict[str, str]:
    """`squeue`'s state of every task still queued of a job array, by task id."""
    try:
        out = subprocess.run(
            ["squeue", "--noheader", "--array", "--format=%i %T", "--jobs", job_id],
            capture_output=True, text=True, timeout=120,
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise BrainPropError(f"squeue failed ({error}); is SLURM up?") from None
    if out.returncode != 0:
        if "Invalid job id" in out.stderr:  # forgotten: every task has long ended
            return {}
        raise BrainPropError(
            f"squeue failed: {one_line(out.stderr, 300, last=True) or 'no message'}")
    return dict(line.split(maxsplit=1) for line in out.stdout.splitlines() if line.strip())


# --- The child process ------------------------------------------------------------------


def _child(argv: list[str]) -> int:
    """`python -m brainprop.runs.jobs CORES ARGV...`: pin to CORES, then main.py ARGV.

    Started with SIGINT and SIGTERM held (`signals.held`); one that came while it started
    is noted here and stops the run at its first safe point.  Once main.py has returned,
    its status is the truth: a signal then is held until the process ends.
    """
    with signals.stop_signals():
        signals.release()
        status = _main(argv)
        signals.block()
    return status


def _main(argv: list[str]) -> int:
    where, *main_argv = argv
    if where != "-":
        os.sched_setaffinity(0, {int(c) for c in where.split(",")})
    gpu_settings = " ".join(f"{k}={os.environ[k]}" for k in ("CUDA_VISIBLE_DEVICES",
                                                               *SHARED_GPU_ENVIRONMENT)
                            if k in os.environ)
    print(f"[jobs] {' '.join(['main.py', *main_argv])}\n[jobs] process {os.getpid()} on "
          f"{socket.gethostname()}, cores {_ranges(sorted(os.sched_getaffinity(0)))}, "
          f"{gpu_settings}", flush=True)
    # Imported once `_child` notes signals: main.py's imports take seconds.
    from brainprop.runs.cli import main

    return main(main_argv)


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
