"""Regenerate the README's measured figures with one command.

Every measured figure block of ``README.md`` (and of the notes it cites) is a *step* below: the
commands that produce it, the files they write, the time it took where the README or the notes say,
and whether it needs a GPU or an EasyEdit checkout. A step that reads another step's output names
it in ``after`` and runs after it.

    python benchmarks/reproduce_readme.py --list                 # steps, README figure, time, needs
    python benchmarks/reproduce_readme.py --only doses --dry-run # the exact shell commands, nothing run
    python benchmarks/reproduce_readme.py --threads 1            # every CPU step, into runs/readme/

Each command runs as a subprocess with this interpreter from the repository root (``python -m
easyedit_split.cli ...``, never a console script, so a worktree runs its own code; the root is put
first on ``PYTHONPATH``). Everything is written under ``--output`` (default ``runs/readme/``), one
folder per step with a ``command<i>.log`` per command; ``docs/img/`` is touched only with
``--update-docs`` (each PNG copied there atomically once its step has succeeded). The run stops at
the first failing command, naming the step and the command, and ``REPRODUCED.md`` in the output root
(rewritten atomically after every step) lists each step, its commands, its duration and its output
files.

``--threads N`` sets ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` for every step and passes ``--threads N``
to every command that has that option; the figures must not depend on it (the ``bench_*`` scripts pin
one torch thread themselves: their figures are one-thread ratios).

By default every step that needs no GPU runs; the steps that need an EasyEdit checkout run when
``$EASYEDIT_PATH`` (or ``--easyedit``) names one and are skipped otherwise. ``--only a,b`` runs those
steps and the steps they depend on, GPU and EasyEdit steps included (an error where their need is
not met).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from easyedit_split.base.atomic_io import atomic_path, atomic_write_text, check_writable

logger = logging.getLogger("reproduce_readme")

DEFAULT_OUTPUT = "runs/readme"
REPORT_NAME = "REPRODUCED.md"
DOCS_IMG = ROOT / "docs" / "img"

# The table of steps lives in readme_steps.py (data only); this script selects, orders and runs them.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from readme_steps import STEP_BY_NAME, STEPS, Command, Step  # noqa: F401 - re-exported for callers


def check_table(steps: Sequence[Step] = STEPS) -> None:
    """Names unique; every ``after`` a known step, without cycles; a step needs whatever the steps it depends on
    need (GPU, EasyEdit). Raises ValueError naming the step (checked at import, so a bad table never runs)."""
    by_name: dict[str, Step] = {}
    for s in steps:
        if s.name in by_name:
            raise ValueError(f"step {s.name!r} is declared twice")
        by_name[s.name] = s
    for s in steps:
        for dep in s.after:
            if dep not in by_name:
                raise ValueError(f"step {s.name!r} runs after {dep!r}, which is not a step")
            d = by_name[dep]
            if (d.needs_gpu and not s.needs_gpu) or (d.needs_easyedit and not s.needs_easyedit):
                raise ValueError(f"step {s.name!r} depends on {dep!r}, which needs {d.needs()}: say so in its needs")
    order_steps(steps, [s.name for s in steps])  # raises on a cycle


# ---------------------------------------------------------------------------------------------------------------
# Selection and order
# ---------------------------------------------------------------------------------------------------------------

class SelectionError(ValueError):
    """A step name or a need that cannot be satisfied (the message names it)."""


def order_steps(steps: Sequence[Step], names: Iterable[str]) -> list[Step]:
    """``names`` and every step they depend on, each after its dependencies (declaration order otherwise)."""
    by_name = {s.name: s for s in steps}
    wanted: set[str] = set()
    ordered: list[Step] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in wanted:
            return
        if name in visiting:
            raise ValueError(f"steps depend on each other in a cycle: {' -> '.join([*visiting, name])}")
        visiting.append(name)
        for dep in by_name[name].after:
            visit(dep)
        visiting.pop()
        wanted.add(name)
        ordered.append(by_name[name])

    names = set(names)
    for s in steps:  # declaration order decides among independent steps
        if s.name in names:
            visit(s.name)
    return ordered


def parse_only(text: str, steps: Sequence[Step] = STEPS) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise SelectionError("--only: no step named; see --list")
    known = {s.name for s in steps}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SelectionError(f"--only: unknown step {', '.join(repr(n) for n in unknown)} "
                             f"(steps: {', '.join(s.name for s in steps)})")
    return names


def select_steps(only: Sequence[str] | None, *, easyedit: str | None, gpu_available: bool | None,
                 steps: Sequence[Step] = STEPS) -> tuple[list[Step], list[tuple[Step, str]]]:
    """(steps to run in order, [(step, why it is skipped)]).

    Default (``only`` None): every step without a GPU need; EasyEdit steps only where a checkout is given.
    ``only``: those steps and their dependencies; an unmet need is an error. ``gpu_available`` None: not checked
    (a dry run prints GPU steps on any machine).
    """
    if only is None:
        skipped = []
        for s in steps:
            if s.needs_gpu:
                skipped.append((s, "needs a GPU: run it with --only " + s.name))
            elif s.needs_easyedit and not easyedit:
                skipped.append((s, "needs an EasyEdit checkout: set EASYEDIT_PATH or give --easyedit"))
        gone = {s.name for s, _ in skipped}
        return order_steps(steps, [s.name for s in steps if s.name not in gone]), skipped
    chosen = order_steps(steps, only)
    for s in chosen:
        if s.needs_easyedit and not easyedit:
            raise SelectionError(f"step {s.name!r} needs an EasyEdit checkout: set EASYEDIT_PATH or give --easyedit")
        if s.needs_gpu and gpu_available is False:
            raise SelectionError(f"step {s.name!r} needs a GPU and torch sees none (torch.cuda.is_available() is False)")
    return chosen, []


# ---------------------------------------------------------------------------------------------------------------
# Commands, filled in
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Context:
    python: str
    root: Path
    output: Path
    easyedit: str | None = None
    threads: int | None = None
    base_env: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def fields(self, step: Step) -> dict[str, str]:
        return {"python": self.python, "root": str(self.root), "output": str(self.output),
                "step": str(self.output / step.name), "easyedit": self.easyedit or "$EASYEDIT_PATH"}

    def env_updates(self) -> dict[str, str]:
        """What every step's environment gets over ``base_env``."""
        updates = {"PYTHONPATH": os.pathsep.join([str(self.root), *filter(None, [self.base_env.get("PYTHONPATH")])])}
        if self.threads is not None:
            updates.update(OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads))
        return updates


@dataclass(frozen=True)
class Resolved:
    """A command with its placeholders filled in: what runs, where, with what environment."""

    argv: list[str]
    cwd: Path
    env_updates: dict[str, str]

    def shell(self, root: Path) -> str:
        """One shell line (after ``cd root`` and the common exports of :func:`shell_preamble`)."""
        line = shlex.join(self.argv)
        if self.env_updates:
            line = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env_updates.items()) + " " + line
        return line if self.cwd == root else f"(cd {shlex.quote(str(self.cwd))} && {line})"


def resolve(command: Command, step: Step, ctx: Context) -> Resolved:
    fields = ctx.fields(step)
    argv = [a.format_map(fields) for a in command.argv]
    if command.threads_option and ctx.threads is not None:
        argv += ["--threads", str(ctx.threads)]
    extra_env = {}
    if command.pythonpath:
        base = ctx.env_updates()["PYTHONPATH"]
        extra_env["PYTHONPATH"] = os.pathsep.join([*(p.format_map(fields) for p in command.pythonpath), base])
    return Resolved(argv, Path(command.cwd.format_map(fields)), extra_env)


def shell_preamble(ctx: Context) -> list[str]:
    return [f"cd {shlex.quote(str(ctx.root))}"] + [f"export {k}={shlex.quote(v)}" for k, v in ctx.env_updates().items()]


# ---------------------------------------------------------------------------------------------------------------
# Checking commands against the parsers of the programs they call (used before a run and by the tests)
# ---------------------------------------------------------------------------------------------------------------

def _load_script(path: Path):
    import importlib.util

    name = f"_reproduce_readme_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def argument_parser(argv: Sequence[str]):
    """A function parsing ``argv``'s arguments with the real parser of the program ``argv`` runs (argparse exits
    with status 2 on bad arguments), or None for a program this process cannot parse for (EasyEdit's scripts,
    ``python -c``)."""
    if len(argv) >= 3 and argv[1] == "-m" and argv[2] == "easyedit_split.cli":
        from easyedit_split.cli import build_parser

        return lambda args: build_parser().parse_args(args)
    if len(argv) >= 3 and argv[1] == "-m" and argv[2] == "easyedit_split.editing.compare":
        from easyedit_split.editing.compare import build_parser

        return lambda args: build_parser().parse_args(args)
    if len(argv) >= 2 and argv[1].startswith("benchmarks/") and argv[1].endswith(".py"):
        return _load_script(ROOT / argv[1]).parse_args
    return None


def program_arguments(argv: Sequence[str]) -> list[str]:
    """``argv`` without the interpreter and the program (``-m module`` or a script)."""
    return list(argv[3:] if argv[1] == "-m" else argv[2:])


def check_arguments(steps: Sequence[Step], ctx: Context) -> None:
    """Parse every command's arguments with its program's parser before anything runs (a drifted flag fails here,
    not an hour into the run). Raises SelectionError naming the step and the command."""
    import contextlib
    import io

    for step in steps:
        for command in step.commands:
            r = resolve(command, step, ctx)
            parse = argument_parser(r.argv)
            if parse is None:
                continue
            err = io.StringIO()
            try:
                with contextlib.redirect_stderr(err):
                    parse(program_arguments(r.argv))
            except SystemExit as exc:
                raise SelectionError(f"step {step.name!r}: the arguments of `{shlex.join(r.argv)}` do not parse "
                                     f"({err.getvalue().strip().splitlines()[-1] if err.getvalue() else exc})") from None


# ---------------------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------------------

class StepFailed(RuntimeError):
    def __init__(self, step: Step, message: str):
        super().__init__(f"step {step.name!r} failed: {message}")
        self.step = step


@dataclass
class StepRecord:
    step: Step
    status: str = "not run"
    seconds: float | None = None
    commands: list[str] = dataclasses.field(default_factory=list)
    logs: list[str] = dataclasses.field(default_factory=list)
    copied: list[str] = dataclasses.field(default_factory=list)


def _run_command(r: Resolved, env: Mapping[str, str], log: Path, shell: str, echo: bool) -> int:
    """Run one command, its output (stdout and stderr) streamed into ``log`` (``log.partial`` while it runs)
    and, with ``echo``, to this process's stdout. Returns the exit status."""
    partial = log.with_name(log.name + ".partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    with open(partial, "wb") as fh:
        fh.write(f"$ {shell}\n".encode())
        fh.flush()
        proc = subprocess.Popen(r.argv, cwd=r.cwd, env={**env, **r.env_updates},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            for chunk in iter(lambda: proc.stdout.read1(1 << 16), b""):
                fh.write(chunk)
                if echo:
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.buffer.flush()
            status = proc.wait()
        except BaseException:
            proc.terminate()
            proc.wait()
            raise
    os.replace(partial, log)
    return status


def copy_figure(src: Path, name: str, docs_img: Path = DOCS_IMG) -> Path:
    dest = docs_img / name
    with atomic_path(dest, suffix=".png") as tmp:
        shutil.copyfile(src, tmp)
    return dest


def run_step(step: Step, ctx: Context, record: StepRecord, *, update_docs: bool, echo: bool,
             docs_img: Path = DOCS_IMG) -> None:
    folder = ctx.output / step.name
    if folder.exists():
        shutil.rmtree(folder)  # checked before the run: only with --overwrite
    folder.mkdir(parents=True)
    env = {**ctx.base_env, **ctx.env_updates()}
    t0 = time.perf_counter()
    record.status = "running"
    try:
        for i, command in enumerate(step.commands, 1):
            r = resolve(command, step, ctx)
            shell = r.shell(ctx.root)
            record.commands.append(shell)
            log = folder / f"command{i}.log"
            record.logs.append(str(log.relative_to(ctx.output)))
            logger.info("[%s] command %d/%d: %s", step.name, i, len(step.commands), shell)
            status = _run_command(r, env, log, shell, echo)
            if status != 0:
                raise StepFailed(step, f"command {i} exited with status {status}: {shell}\n  log: {log}")
        missing = [w for w in step.writes if not (folder / w).exists()]
        if missing:
            raise StepFailed(step, f"its commands finished but did not write {', '.join(missing)} (in {folder})")
        if update_docs:
            for src, name in step.figures:
                record.copied.append(str(copy_figure(folder / src, name, docs_img)))
                logger.info("[%s] copied %s to %s", step.name, folder / src, record.copied[-1])
        record.status = "ok"
    except StepFailed:
        record.status = "failed"
        raise
    except BaseException:
        record.status = "interrupted"
        raise
    finally:
        record.seconds = time.perf_counter() - t0


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = round(seconds)
    return f"{s} s" if s < 60 else (f"{s // 60} min {s % 60} s" if s < 3600 else f"{s // 3600} h {s % 3600 // 60} min")


def _git_revision(root: Path) -> str:
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" with uncommitted changes" if dirty else "")


def render_record(records: Sequence[StepRecord], skipped: Sequence[tuple[Step, str]], ctx: Context, *,
                  started: str, revision: str, finished: str | None) -> str:
    threads = (f"{ctx.threads} (OMP_NUM_THREADS, MKL_NUM_THREADS and every --threads option)" if ctx.threads
               else f"not set by the script (OMP_NUM_THREADS={ctx.base_env.get('OMP_NUM_THREADS', 'unset')})")
    lines = [
        "# README figures reproduced", "",
        f"Written by `benchmarks/reproduce_readme.py`. Started {started}"
        + (f", finished {finished}." if finished else ", still running or stopped (see the statuses)."),
        "",
        f"- revision: {revision}",
        f"- python: {ctx.python} ({platform.python_version()}), {platform.machine()}, {os.cpu_count()} CPUs",
        f"- threads: {threads}",
        f"- output root: {ctx.output}",
        "",
        "| step | README figure | status | duration | README/notes time |",
        "|---|---|---|---|---|",
    ]
    for r in records:
        est = f"{'~' if r.step.estimated else ''}{r.step.minutes:g} min"
        lines.append(f"| `{r.step.name}` | {r.step.section} | {r.status} | {format_duration(r.seconds)} | {est} |")
    for s, why in skipped:
        lines.append(f"| `{s.name}` | {s.section} | skipped: {why} | – | – |")
    for r in records:
        s = r.step
        lines += ["", f"## `{s.name}`", "", s.section, ""]
        if s.note:
            lines += [f"Note: {s.note}", ""]
        status = (f"Status: {r.status}; duration {format_duration(r.seconds)} "
                  f"(README/notes: {s.minutes:g} min, {s.time_source}).")
        lines += [status, "", "Commands:", "", "```bash"]
        lines += r.commands or [resolve(c, s, ctx).shell(ctx.root) for c in s.commands]
        lines += ["```", "", "Output files (in `" + s.name + "/`): " + ", ".join(f"`{w}`" for w in s.writes)]
        if r.logs:
            lines.append("Logs: " + ", ".join(f"`{x}`" for x in r.logs))
        if r.copied:
            lines.append("Copied to the docs: " + ", ".join(f"`{x}`" for x in r.copied))
        elif s.figures:
            lines.append("Figures (copied to docs/img/ with --update-docs): "
                         + ", ".join(f"`{src}` → `docs/img/{name}`" for src, name in s.figures))
    return "\n".join(lines) + "\n"


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def run_all(steps: Sequence[Step], skipped: Sequence[tuple[Step, str]], ctx: Context, *, update_docs: bool,
            echo: bool, docs_img: Path = DOCS_IMG) -> list[StepRecord]:
    """Run ``steps`` in order, rewriting REPRODUCED.md after each; stops at the first failure (StepFailed)."""
    started, revision = _now(), _git_revision(ctx.root)
    records = [StepRecord(s) for s in steps]
    report = ctx.output / REPORT_NAME

    def publish(finished: str | None) -> None:
        atomic_write_text(report, render_record(records, skipped, ctx, started=started, revision=revision,
                                                finished=finished))

    publish(None)
    try:
        for i, record in enumerate(records, 1):
            s = record.step
            logger.info("step %d/%d %s: %s (README/notes: %s%g min)", i, len(records), s.name, s.section,
                        "~" if s.estimated else "", s.minutes)
            try:
                run_step(s, ctx, record, update_docs=update_docs, echo=echo, docs_img=docs_img)
            finally:
                logger.info("step %s: %s after %s", s.name, record.status, format_duration(record.seconds))
                publish(None)
    finally:
        done = all(r.status == "ok" for r in records)
        publish(_now() if done else None)
        logger.info("record: %s", report)
    return records


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------

def list_steps(steps: Sequence[Step] = STEPS) -> str:
    rows = [("step", "time", "needs", "after", "README figure")]
    for s in steps:
        rows.append((s.name, f"{'~' if s.estimated else ''}{s.minutes:g} min", s.needs(), ",".join(s.after) or "–",
                     s.section))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    out = ["  ".join(c.ljust(w) for c, w in zip(rows[0][:4], widths)) + "  " + rows[0][4]]
    for s, r in zip(steps, rows[1:]):
        out.append("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
        if s.note:
            out.append(" " * (sum(widths) + 8) + "  note: " + s.note)
    cpu = [s for s in steps if not s.needs_gpu and not s.needs_easyedit]
    ee = [s for s in steps if s.needs_easyedit]
    legend = ("time: wall minutes on the 2-core development CPU as the README/notes measured them "
              "(~: estimated, not measured; GPU steps: on the GPU)")
    total = (f"default run (CPU steps): about {sum(s.minutes for s in cpu) / 60:.1f} h; "
             f"with an EasyEdit checkout about {sum(s.minutes for s in cpu + ee) / 60:.1f} h")
    out += ["", legend, total]
    return "\n".join(out) + "\n"


def dry_run(steps: Sequence[Step], skipped: Sequence[tuple[Step, str]], ctx: Context, update_docs: bool) -> str:
    """The run as a shell script: the same commands, environment, working folders and logs (without the echo to
    the terminal, the checks made before the run, and REPRODUCED.md)."""
    lines = ["# benchmarks/reproduce_readme.py --dry-run: the commands a run executes, in order",
             "# (a run first refuses step folders left by an earlier run unless --overwrite, which removes them)",
             "set -e", *shell_preamble(ctx)]
    for s, why in skipped:
        lines.append(f"# skipped {s.name}: {why}")
    for s in steps:
        folder = ctx.output / s.name
        lines += ["", f"# step {s.name} ({s.needs()}): {s.section}"]
        lines += [f"# note: {s.note}"] if s.note else []
        lines.append(f"mkdir -p {shlex.quote(str(folder))}")
        for i, c in enumerate(s.commands, 1):
            log = folder / f"command{i}.log"
            lines.append(f"{resolve(c, s, ctx).shell(ctx.root)} > {shlex.quote(str(log))} 2>&1")
        if update_docs:
            lines += [f"cp {shlex.quote(str(folder / src))} {shlex.quote(str(DOCS_IMG / name))}"
                      for src, name in s.figures]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/reproduce_readme.py", description=__doc__.split("\n\n")[0],
                                epilog="See the module docstring (python -m pydoc benchmarks/reproduce_readme.py).")
    p.add_argument("--list", action="store_true", help="list the steps (name, time, needs, README figure) and exit")
    p.add_argument("--only", default=None, metavar="A,B", help="run only these steps (and the steps they depend on)")
    p.add_argument("--dry-run", action="store_true", help="print the exact shell commands and run nothing")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help=f"output root (default {DEFAULT_OUTPUT}/)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch/OpenMP threads for every step (OMP_NUM_THREADS, MKL_NUM_THREADS, --threads)")
    p.add_argument("--easyedit", default=None, help="EasyEdit checkout (default: $EASYEDIT_PATH)")
    p.add_argument("--update-docs", action="store_true", help="copy each regenerated PNG into docs/img/ (atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace step folders left by an earlier run")
    p.add_argument("--quiet", action="store_true", help="do not echo the commands' output (it still goes to the logs)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        sys.stdout.write(list_steps())
        return 0
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    easyedit = args.easyedit or os.environ.get("EASYEDIT_PATH") or None
    if easyedit and not Path(easyedit).is_dir():
        parser.error(f"the EasyEdit checkout {easyedit!r} ({'--easyedit' if args.easyedit else 'EASYEDIT_PATH'}) "
                     "is not a folder")
    ctx = Context(python=sys.executable, root=ROOT, output=Path(args.output).resolve(),
                  easyedit=str(Path(easyedit).resolve()) if easyedit else None, threads=args.threads,
                  base_env=dict(os.environ))
    try:
        only = parse_only(args.only) if args.only is not None else None
        gpu = None
        if not args.dry_run and only is not None and any(s.needs_gpu for s in order_steps(STEPS, only)):
            import torch

            gpu = torch.cuda.is_available()
        steps, skipped = select_steps(only, easyedit=ctx.easyedit, gpu_available=gpu)
        if args.dry_run:
            sys.stdout.write(dry_run(steps, skipped, ctx, args.update_docs))
            return 0
        check_arguments(steps, ctx)
        check_writable(ctx.output, what="--output")
        taken = [str(ctx.output / s.name) for s in steps
                 if (ctx.output / s.name).is_dir() and any((ctx.output / s.name).iterdir())]
        if taken and not args.overwrite:
            raise SelectionError(f"step folders from an earlier run exist: {', '.join(taken)}; give --overwrite to "
                                 "replace them, or another --output")
    except SelectionError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for s, why in skipped:
        logger.warning("skipping step %s: %s", s.name, why)
    logger.info("%d steps into %s: %s", len(steps), ctx.output, ", ".join(s.name for s in steps))
    try:
        run_all(steps, skipped, ctx, update_docs=args.update_docs, echo=not args.quiet)
    except StepFailed as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"interrupted; finished steps are recorded in {ctx.output / REPORT_NAME}\n")
        return 130
    return 0


check_table()

if __name__ == "__main__":
    sys.exit(main())
