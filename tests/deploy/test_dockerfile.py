"""The Dockerfile, checked without a Docker daemon (the development machine has none).

What can be checked here is checked for real: the build context is rebuilt from the
Dockerfile's COPY lines and .dockerignore, and driftgate is built as a wheel from it, as
the image's first stage does; the command that lists the third-party packages runs on the
copied pyproject.toml. Whether the image builds and starts can only be seen with Docker
(docs/deploy.md says so).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from runtime.backends.pmml import JAVA_INSTALL_HINT
from tests.deploy.manifests import ROOT, load_documents, pod_spec, workloads

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
BASE_IMAGE = "python:3.11-slim-bookworm"
#: Linux x86_64, where constraints.txt was tested: the markers of the image's platform.
IMAGE_PLATFORM = {"platform_machine": "x86_64", "sys_platform": "linux", "python_version": "3.11"}


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    stage: int  # 0 for the first FROM's stage


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    found: list[Instruction] = []
    stage = -1
    pending = ""
    for line in text.splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if line.rstrip().endswith("\\"):
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage += 1
        found.append(Instruction(keyword.upper(), " ".join(arguments.split()), stage))
    return found


INSTRUCTIONS = instructions(DOCKERFILE.read_text())
FINAL_STAGE = max(i.stage for i in INSTRUCTIONS)


def only(keyword: str, stage: int | None = None) -> list[Instruction]:
    return [i for i in INSTRUCTIONS if i.keyword == keyword and stage in (None, i.stage)]


def build_arg(name: str) -> str:
    for instruction in only("ARG"):
        key, _, default = instruction.arguments.partition("=")
        if key == name:
            return default
    raise AssertionError(f"no ARG {name} in the Dockerfile")


# --- .dockerignore --------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax: ``*`` and ``?`` stay within a path segment, ``**`` spans
    any number of them."""
    regex = ""
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            regex, index = regex + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            regex, index = regex + ".*", index + 2
        elif pattern[index] == "*":
            regex, index = regex + "[^/]*", index + 1
        elif pattern[index] == "?":
            regex, index = regex + "[^/]", index + 1
        else:
            regex, index = regex + re.escape(pattern[index]), index + 1
    return re.compile(regex + r"\Z")


def ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception, pattern) for each line of .dockerignore, in order."""
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        cleaned = os.path.normpath(line.removeprefix("!").strip("/"))
        rules.append((exception, _pattern_regex(cleaned)))
    return rules


def excluded(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker leaves ``path`` (relative to the context) out: the last rule that
    matches the path, or one of its parent folders, decides."""
    parts = Path(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for exception, pattern in rules:
        if any(pattern.match(candidate) for candidate in candidates):
            verdict = not exception
    return verdict


# --- the context as the first stage sees it -------------------------------------------------


def copy_sources(stage: int) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the context in ``stage``."""
    copies = []
    for instruction in only("COPY", stage):
        words = shlex.split(instruction.arguments)
        if any(word.startswith("--from") for word in words):
            continue
        words = [word for word in words if not word.startswith("--")]
        copies.append((words[:-1], words[-1]))
    return copies


def files_under(source: str, rules: list[tuple[bool, re.Pattern[str]]]) -> list[Path]:
    path = ROOT / source
    candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [p for p in candidates if not excluded(str(p.relative_to(ROOT)), rules)]


def assemble_stage(stage: int, workdir: Path) -> None:
    """Copy what ``stage``'s COPY lines copy from the context into ``workdir``."""
    rules = ignore_rules()
    for sources, destination in copy_sources(stage):
        into_folder = destination.endswith("/") or len(sources) > 1
        for source in sources:
            base = ROOT / source
            for file in files_under(source, rules):
                if base.is_dir():
                    target = workdir / destination / file.relative_to(base)
                elif into_folder:
                    target = workdir / destination / file.name
                else:
                    target = workdir / destination
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target)


def top_level_packages() -> list[str]:
    """The repository's packages that pyproject.toml's ``packages.find`` installs."""
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted(
        p.name
        for p in ROOT.iterdir()
        if (p / "__init__.py").is_file()
        and any(_pattern_regex(pattern).match(p.name) for pattern in include)
    )


# --- the tests ------------------------------------------------------------------------------


def test_every_stage_starts_from_python_311_slim_bookworm() -> None:
    bases = [i.arguments.split()[0] for i in only("FROM")]

    assert bases == [BASE_IMAGE] * len(bases)
    assert "3.11" in SpecifierSet(PYPROJECT["project"]["requires-python"])


def test_the_ignore_rules_keep_the_sources_and_drop_everything_else() -> None:
    rules = ignore_rules()
    kept = [
        "pyproject.toml",
        "constraints.txt",
        "runtime/app.py",
        "runtime/demo/data/titanic/README.md",
    ]
    dropped = [
        ".venv/bin/python",
        "var/models/titanic/1/pipeline.yaml",
        "tests/conftest.py",
        "driftgate.egg-info/PKG-INFO",
        "gateway/__pycache__/app.cpython-311.pyc",
        "Dockerfile",
    ]

    assert [path for path in kept if excluded(path, rules)] == []
    assert [path for path in dropped if not excluded(path, rules)] == []


@pytest.mark.parametrize("stage", range(FINAL_STAGE + 1))
def test_every_copied_path_exists_and_is_in_the_context(stage: int) -> None:
    rules = ignore_rules()
    for sources, _ in copy_sources(stage):
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
            assert not excluded(source, rules), f"COPY {source}: left out by .dockerignore"
            assert files_under(source, rules), f"COPY {source}: nothing of it reaches Docker"


def test_the_wheel_stage_copies_every_package_pyproject_installs() -> None:
    copied = {source for sources, _ in copy_sources(0) for source in sources}

    assert set(top_level_packages()) <= copied
    assert {"pyproject.toml", PYPROJECT["project"]["readme"]} <= copied


def test_driftgate_builds_as_a_wheel_from_what_the_first_stage_copies(tmp_path: Path) -> None:
    source, wheels = tmp_path / "src", tmp_path / "wheels"
    assemble_stage(0, source)
    wheels.mkdir()

    built = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from setuptools import build_meta; "
            "print(build_meta.build_wheel(sys.argv[1]))",
            str(wheels),
        ],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    assert built.returncode == 0, built.stderr[-3000:]
    wheel = wheels / built.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    assert {f"{package}/__init__.py" for package in top_level_packages()} <= names
    assert "runtime/demo/data/titanic/titanic_reference.csv" in names
    assert "driftgate/cli.py" in names
    assert "driftgate = driftgate.cli:main" in scripts


def _listing_command() -> str:
    for instruction in only("RUN", FINAL_STAGE):
        match = re.search(r"python -c '([^']*)'", instruction.arguments)
        if match:
            return match[1]
    raise AssertionError("no `python -c` listing the requirements in the final stage")


def test_the_image_gets_driftgate_with_every_backend_and_no_dev_tools(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    extras = build_arg("EXTRAS").split(",")

    listed = subprocess.run(
        [sys.executable, "-c", _listing_command()],
        cwd=tmp_path,
        env={**os.environ, "EXTRAS": ",".join(extras)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()

    optional = PYPROJECT["project"]["optional-dependencies"]
    # The backends are the extras `all` pulls in that install anything.
    all_extras = Requirement(optional["all"][0]).extras
    assert set(extras) == {extra for extra in all_extras if optional[extra]}
    expected = PYPROJECT["project"]["dependencies"] + [r for e in extras for r in optional[e]]
    assert listed == expected
    names = {canonicalize_name(Requirement(line).name) for line in listed}
    assert names.isdisjoint({"pytest", "ruff", "mypy", "scikit-learn", "tritonclient"})


def test_every_package_the_image_installs_is_pinned_by_constraints() -> None:
    pins = {
        canonicalize_name(line.split("==")[0])
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    optional = PYPROJECT["project"]["optional-dependencies"]
    wanted = PYPROJECT["project"]["dependencies"] + [
        r for e in build_arg("EXTRAS").split(",") for r in optional[e]
    ]
    for line in wanted:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(IMAGE_PLATFORM):
            assert canonicalize_name(requirement.name) in pins, f"{line} is not pinned"


def test_every_pip_install_of_the_image_uses_the_constraints() -> None:
    installs = [
        command
        for instruction in only("RUN", FINAL_STAGE)
        for command in instruction.arguments.split("&&")
        if "pip install" in command
    ]

    assert len(installs) == 2
    for command in installs:
        assert re.search(r"--constraint \S*constraints\.txt", command), command
    assert '"driftgate[${EXTRAS}]"' in installs[-1]


def test_the_image_has_java_for_pmml_models() -> None:
    installs = " ".join(
        i.arguments for i in only("RUN", FINAL_STAGE) if "apt-get install" in i.arguments
    )

    assert "default-jre-headless" in installs
    assert "default-jre-headless" in JAVA_INSTALL_HINT  # what the PMML backend tells users


def test_the_image_runs_as_the_unprivileged_user_the_pods_ask_for() -> None:
    (user,) = [i.arguments for i in only("USER", FINAL_STAGE)]
    uid, gid = (int(part) for part in user.split(":"))
    (created,) = [i.arguments for i in only("RUN", FINAL_STAGE) if "useradd" in i.arguments]

    assert uid != 0 and gid != 0
    assert f"--uid {uid}" in created and f"--gid {gid}" in created
    for workload in workloads(load_documents()):
        context = pod_spec(workload.body)["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid), str(workload)


def test_the_entrypoint_is_the_driftgate_command() -> None:
    (entrypoint,) = [i.arguments for i in only("ENTRYPOINT")]
    command: list[Any] = json.loads(entrypoint)

    assert command == ["driftgate"]
    assert PYPROJECT["project"]["scripts"]["driftgate"] == "driftgate.cli:main"
    assert only("ENTRYPOINT")[0].stage == FINAL_STAGE
