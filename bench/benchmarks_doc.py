"""BENCHMARKS.md as the bench scripts write it: one marked section per script, and the
machine line every section starts with.

Each script owns the part of BENCHMARKS.md between its two markers, named after it::

    <!-- bench/NAME.py: begin (rewritten by --write) -->
    ...
    <!-- bench/NAME.py: end -->

``--write`` replaces that part and nothing else: the hand-written reading after the end
marker stays. ``with_section`` is the rule on text; ``write_section`` applies it to a file.
Not a package: the scripts import this as a sibling (``python bench/NAME.py`` puts bench/
first on ``sys.path``).
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"
#: What a missing BENCHMARKS.md starts with.
NEW_PAGE = "# Benchmarks\n\n"


def section_markers(script: str) -> tuple[str, str]:
    """The begin and end markers of ``script``'s section (a path or a name: ``__file__``,
    ``"bench/batching.py"`` and ``"batching"`` give the same)."""
    name = f"bench/{Path(script).stem}.py"
    return f"<!-- {name}: begin (rewritten by --write) -->", f"<!-- {name}: end -->"


def with_section(text: str | None, script: str, section: str) -> str:
    """``text`` (None: no page yet) with ``script``'s section replaced by ``section``, or
    appended after a blank line when it has none.

    The replaced part runs from the begin marker to the first end marker after it and the
    newline that ends that line; the text after it is kept as it is (the blank line before
    a hand-written reading included).
    """
    begin, end = section_markers(script)
    block = f"{begin}\n{section}{end}\n"
    if text is None:
        return NEW_PAGE + block
    start = text.find(begin)
    if start < 0:
        return text.rstrip("\n") + "\n\n" + block
    stop = text.find(end, start + len(begin))
    if stop < 0:
        raise ValueError(f"{begin} has no {end} after it: put the end marker back, then rerun")
    return text[:start] + block + text[stop + len(end) :].removeprefix("\n")


def write_section(path: Path, script: str, section: str) -> None:
    """Replace ``script``'s section of ``path`` (``with_section``); create the page when
    missing."""
    text = path.read_text() if path.exists() else None
    try:
        path.write_text(with_section(text, script, section))
    except ValueError as error:
        raise SystemExit(f"{path}: {error}") from None


def load_flags(argv: Sequence[str]) -> list[str]:
    """The flags that shape the load (for the reproduce line): no paths, no --write."""
    takes_value = {"--repository": 1, "--output": 1, "--write": 0, "--keep-logs": 0}
    out, skip = [], 0
    for arg in argv:
        name = arg.split("=", 1)[0]
        if skip:
            skip -= 1
        elif name in takes_value:
            skip = takes_value[name] if "=" not in arg else 0
        else:
            out.append(arg)
    return out


def proc_field(path: str, key: str) -> str | None:
    """The value of the first ``key: value`` line of a /proc file (``/proc/cpuinfo``,
    ``/proc/meminfo``); None when the file or the line is missing."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(key)), None)


def machine_description() -> dict[str, str]:
    """The machine and code a run measured: ``cpu``, ``os``, ``python``, ``wrk`` (its
    version line, or just "wrk") and ``commit`` (short hash, with a note when the tracked
    files differ from it)."""
    cpu = proc_field("/proc/cpuinfo", "model name")
    if cpu is None:
        cpu = "unknown CPU"

    def output(*command: str) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
        except OSError:
            return ""
        return (done.stdout or done.stderr).strip()

    wrk = output("wrk", "-v").splitlines()
    dirty = output("git", "status", "--porcelain", "--untracked-files=no")
    return {
        "cpu": f"{os.cpu_count()} cores, {cpu}",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "wrk": wrk[0].split(" Copyright")[0] if wrk else "wrk",
        "commit": (output("git", "rev-parse", "--short", "HEAD") or "unknown")
        + (" plus uncommitted changes" if dirty else ""),
    }
