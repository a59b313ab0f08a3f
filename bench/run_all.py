"""Run every benchmark in bench/ and render BENCHMARKS.md from their ``BENCH_ROWS`` lines.

Each ``bench/*.py`` except this file and the helpers ``report.py`` and ``clients.py`` is
run one after the other, as a subprocess from the repository root, with a timeout; its
last ``BENCH_ROWS <json>`` line (see ``bench/report.py``) gives the rows of the table,
the rest of its output goes to the raw notes. A bench that fails, times out or prints no
rows gets a FAILED row.

    .venv/bin/python bench/run_all.py --quick                # print the table
    .venv/bin/python bench/run_all.py --quick --write        # and rewrite BENCHMARKS.md
    .venv/bin/python bench/run_all.py --write \
        --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

``--postgres`` is an admin URL (database ``postgres``); each bench gets what its own
``--postgres`` expects (see ``postgres_args``).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import platform
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from report import parse_rows
from sqlalchemy.engine import make_url

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
NOT_BENCHES = {"clients", "report", "run_all", "scratch_databases"}
OUTPUT = REPO / "BENCHMARKS.md"
PROSE_BEGIN = "<!-- prose: kept by bench/run_all.py, edit freely between these markers -->"
PROSE_END = "<!-- /prose -->"
NOTE_LINES = 60
NOTE_LINE_CHARS = 240

# Sizes for --quick, for benches without a --quick flag of their own.
QUICK_ARGS: dict[str, list[str]] = {
    "outbox_pipeline": ["--events", "2000", "--latency-events", "200"],
}

DEFAULT_PROSE = """\
## How to read the figures

- Measured on the project's 2-core machine while other jobs were running: expect
  ±30 % between runs. The header gives the load average at the start of the run.
- Each row is one run of its command; the baseline in the same row was measured in
  that same run, on the same database and broker.
- **ratio** is figure ÷ baseline in the same unit (the baseline's unit is shown where
  it differs, e.g. events/s against msgs/s). For rates, below 1 is slower than the
  baseline; for latencies (ms), above 1 is slower.
- **p50/p95/p99** are per-request (or commit-to-effect) latencies in ms of the phase the
  row describes; for the outbox pipeline and webhooks they come from the steady-rate
  latency phase, not from the flat-out throughput phase.
- **met?** is the bench's own verdict against the issue's target; `-` means the issue sets
  no target for that row, or the run was too small (`--quick`) for the target to apply.
- **outbox_pipeline** "ours" is the whole path: `add_events` (100 per transaction) ->
  relay -> Tansu -> `EventConsumer` (inbox claim plus the analytics daily-growth upsert
  per event) in a second database. Writer, relay and consumer share one event loop.
  Its raw baseline runs before the first lane and after each lane; a lane's ratio is
  against the mean of the two runs either side of it.
- Earlier hand-made runs (2026-11-22, before `make bench`): the outbox pipeline did
  946 events/s on SQLite and 734 events/s on PostgreSQL against 19,953 raw msgs/s
  (ratio 0.047 and 0.037), with p95 68 / 83 ms; before the consumer batched its
  transactions and the relay stopped losing wake-ups it did 262 events/s (SQLite) and
  144-207 events/s (PostgreSQL).
"""


@dataclass
class Run:
    stem: str
    command: list[str]
    skipped: list[str] = field(default_factory=list)
    returncode: int | None = None
    seconds: float = 0.0
    timed_out: bool = False
    stdout: str = ""
    stderr: str = ""
    rows: list[dict[str, Any]] | None = None
    error: str = ""


def benches(only: set[str] | None) -> list[Path]:
    paths = sorted(p for p in BENCH.glob("*.py") if p.stem not in NOT_BENCHES)
    return [p for p in paths if only is None or p.stem in only]


def flags_of(path: Path) -> set[str]:
    """The ``--flags`` a bench's argparse declares, read from its source (nothing runs)."""
    flags: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
        ):
            for arg in node.args:
                if isinstance(arg, ast.Constant) and str(arg.value).startswith("--"):
                    flags.add(str(arg.value))
    return flags


def with_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def postgres_args(stem: str, flags: set[str], admin_url: str | None) -> tuple[list[str], str]:
    """What this bench's PostgreSQL lane needs: (arguments, note when the lane is skipped)."""
    if admin_url is None:
        return (["--no-postgres"] if "--no-postgres" in flags else []), ""
    if stem == "outbox_pipeline":
        # A database URL, created if missing (plus <name>_consumer); its tables are emptied.
        return ["--postgres", with_database(admin_url, "community_bench")], ""
    if stem == "webhooks_delivery":
        # A database URL that the bench drops and recreates: never the admin database.
        return ["--postgres", with_database(admin_url, "webhooks_bench")], ""
    if "--postgres" in flags:
        return ["--postgres", admin_url], ""  # an admin URL; the bench makes its own database
    if "--no-postgres" in flags:
        # These benches use their own fixed admin URL at 127.0.0.1:5432 unless told not to.
        return [], "PostgreSQL lane on the bench's built-in admin URL (127.0.0.1:5432)."
    return [], "this bench has no PostgreSQL lane."


def command_for(path: Path, quick: bool, admin_url: str | None) -> tuple[list[str], list[str]]:
    flags = flags_of(path)
    args: list[str] = []
    notes: list[str] = []
    if quick:
        if "--quick" in flags:
            args.append("--quick")
        else:
            args += QUICK_ARGS.get(path.stem, [])
    pg_args, note = postgres_args(path.stem, flags, admin_url)
    args += pg_args
    if note:
        notes.append(note)
    return [sys.executable, str(path.relative_to(REPO)), *args], notes


def run_one(path: Path, command: list[str], notes: list[str], timeout_s: float) -> Run:
    run = Run(path.stem, command, notes)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    # Its own process group, so a timeout also stops what the bench started (broker, services).
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        start_new_session=True,
    )
    try:
        run.stdout, run.stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        run.timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            run.stdout, run.stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            run.stdout, run.stderr = proc.communicate()
    run.seconds = time.perf_counter() - started
    run.returncode = proc.returncode
    try:
        run.rows = parse_rows(run.stdout)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        run.error = f"unreadable BENCH_ROWS line: {exc}"
    if run.timed_out:
        run.error = f"timed out after {timeout_s:.0f} s"
    elif run.returncode != 0:
        run.error = f"exit code {run.returncode}: {last_error_line(run.stderr)}"
    elif run.rows is None and not run.error:
        run.error = "printed no BENCH_ROWS line"
    return run


def last_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", line):
            return line[:NOTE_LINE_CHARS]
    return lines[-1][:NOTE_LINE_CHARS] if lines else "no output on stderr"


# ---------------------------------------------------------------- machine


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def memory_gib() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    return "unknown memory"


def cores() -> int:
    with contextlib.suppress(AttributeError):
        return len(os.sched_getaffinity(0))  # what `nproc` prints
    return os.cpu_count() or 0


def load_average() -> str:
    with contextlib.suppress(OSError):
        one, five, fifteen = os.getloadavg()
        return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"
    return "unknown"


def git_commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")
    return "unknown"


# ---------------------------------------------------------------- rendering


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    number = float(value)
    if abs(number) >= 100:
        return f"{number:,.0f}"
    if abs(number) >= 10:
        return f"{number:.1f}"
    if abs(number) >= 1:
        return f"{number:.2f}"
    return f"{number:.3f}"


def figure(value: Any, unit: str) -> str:
    return fmt_ms(value) if unit.startswith("ms") else fmt(value)


def fmt_ms(value: Any) -> str:
    if value is None:
        return "-"
    number = float(value)
    return f"{number:,.0f}" if abs(number) >= 100 else f"{number:.1f}"


def cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table_rows(runs: list[Run]) -> list[str]:
    lines = [
        "| bench | lane | what | figure | baseline (same run) | ratio | p50 / p95 / p99 ms "
        "| target | met? |",
        "|---|---|---|--:|---|--:|--:|---|---|",
    ]
    for run in runs:
        if run.error or not run.rows:
            reason = run.error or "printed an empty BENCH_ROWS list"
            lines.append(f"| {run.stem} | - | **FAILED**: {cell(reason)} | - | - | - | - | - | - |")
        for row in run.rows or []:
            unit = str(row.get("unit") or "")
            base = row.get("baseline") or "-"
            if row.get("baseline_figure") is not None:
                base_unit = str(row.get("baseline_unit") or unit)
                base = f"{base}: {figure(row['baseline_figure'], base_unit)} {base_unit}"
            latencies = [row.get("p50_ms"), row.get("p95_ms"), row.get("p99_ms")]
            lat = "-" if all(v is None for v in latencies) else " / ".join(map(fmt_ms, latencies))
            lines.append(
                "| "
                + " | ".join(
                    cell(v)
                    for v in (
                        row.get("bench") or run.stem,
                        row.get("lane") or "-",
                        row.get("what") or "",
                        f"{figure(row.get('figure'), unit)} {unit}".strip(),
                        base.strip(),
                        fmt(row.get("ratio")),
                        lat,
                        row.get("target") or "-",
                        fmt(row.get("met")),
                    )
                )
                + " |"
            )
    return lines


def display_command(command: list[str]) -> str:
    return " ".join([".venv/bin/python", *command[1:]])


def raw_output(run: Run) -> list[str]:
    kept = [
        line if len(line) <= NOTE_LINE_CHARS else line[:NOTE_LINE_CHARS] + " …"
        for line in run.stdout.splitlines()
        if not line.startswith(("BENCH_ROWS ", "BENCH_JSON "))
    ]
    if len(kept) > NOTE_LINES:
        kept = [f"… ({len(kept) - NOTE_LINES} earlier lines left out)", *kept[-NOTE_LINES:]]
    return kept


def notes_for(run: Run) -> list[str]:
    status = "ok" if not run.error else f"FAILED ({run.error})"
    lines = [
        f"### {run.stem}",
        "",
        f"`{display_command(run.command)}` — {status}, {run.seconds:.0f} s",
        "",
    ]
    lines += [f"- {note}" for note in run.skipped]
    lines += [
        f"- {row['lane']}, {row['what']}: {row['note']}" for row in run.rows or [] if row["note"]
    ]
    if run.skipped or any(row["note"] for row in run.rows or []):
        lines.append("")
    lines += ["```", *raw_output(run), "```", ""]
    if run.error:
        tail = [line for line in run.stderr.splitlines() if line.strip()][-25:]
        lines += ["stderr (last lines):", "", "```", *tail, "```", ""]
    return lines


def kept_prose() -> str:
    """The hand-written section of the current BENCHMARKS.md, or the default one."""
    with contextlib.suppress(OSError):
        text = OUTPUT.read_text()
        if PROSE_BEGIN in text and PROSE_END in text:
            return text.split(PROSE_BEGIN, 1)[1].split(PROSE_END, 1)[0].strip("\n") + "\n"
    return DEFAULT_PROSE


def render(runs: list[Run], meta: dict[str, str]) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/run_all.py` (`make bench` runs it at full sizes); edit only "
        "between the prose markers, rerun for the rest.",
        "",
        f"- **Machine:** {meta['cores']} cores ({meta['cpu']}), {meta['memory']}, "
        f"Python {meta['python']}",
        f"- **Date:** {meta['started']} to {meta['finished']} UTC, commit {meta['commit']}",
        f"- **Sizes:** {meta['sizes']}",
        f"- **Load average** (1 / 5 / 15 min) at start: {meta['load_start']}; "
        f"at the end: {meta['load_end']}",
        f"- **PostgreSQL:** {meta['postgres']}",
        "",
        *table_rows(runs),
        "",
        "Commands, as run from the repository root:",
        "",
        *[f"- {run.stem}: `{display_command(run.command)}`" for run in runs],
        "",
        PROSE_BEGIN,
        kept_prose().rstrip("\n"),
        PROSE_END,
        "",
        "## Raw notes",
        "",
    ]
    for run in runs:
        lines += notes_for(run)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="each bench's small sizes")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="admin URL, e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/postgres; "
        "without it the benches run on SQLite only",
    )
    parser.add_argument("--write", action="store_true", help="rewrite BENCHMARKS.md")
    parser.add_argument(
        "--timeout",
        type=float,
        help="seconds per bench (default 600 with --quick, 2400 without)",
    )
    parser.add_argument("--only", nargs="+", metavar="STEM", help="run only these benches")
    args = parser.parse_args(argv)
    timeout_s = args.timeout or (600.0 if args.quick else 2400.0)
    meta = {
        "cores": str(cores()),
        "cpu": cpu_model(),
        "memory": memory_gib(),
        "python": platform.python_version(),
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "commit": git_commit(),
        "sizes": "`--quick` (smoke sizes: figures are indicative only)"
        if args.quick
        else "full (each bench's defaults)",
        "load_start": load_average(),
        "postgres": make_url(args.postgres).render_as_string(hide_password=True)
        if args.postgres
        else "not given: SQLite lanes only",
    }
    paths = benches(set(args.only) if args.only else None)
    if not paths:
        parser.error("no benchmark matched")
    runs: list[Run] = []
    for path in paths:
        command, notes = command_for(path, args.quick, args.postgres)
        print(f"[run_all] {display_command(command)}", file=sys.stderr, flush=True)
        run = run_one(path, command, notes, timeout_s)
        verdict = run.error or f"{len(run.rows or [])} rows"
        print(f"[run_all] {run.stem}: {verdict} ({run.seconds:.0f} s)", file=sys.stderr)
        runs.append(run)
    meta["finished"] = datetime.now(UTC).strftime("%H:%M")
    meta["load_end"] = load_average()
    document = render(runs, meta)
    if args.write:
        OUTPUT.write_text(document)
        print(f"[run_all] wrote {OUTPUT.relative_to(REPO)}", file=sys.stderr)
    else:
        print(document)
    return 1 if any(run.error for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
