"""The production image's file set, derived from deploy/Dockerfile: the function and its companions only."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
# What must never ship: the developer tools and the benchmarks.
NOT_SHIPPED = re.compile(r"(^|/)(emulator|demo\.py|procs\.py|devtools|bench)(/|$)")


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = text.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def stage_build_context(dockerfile_text: str, workdir: Path) -> Path:
    """Do what the Dockerfile's COPY and ``RUN cp … src/`` steps do, from the repository into ``workdir``."""
    for keyword, rest in _instructions(dockerfile_text):
        if keyword == "COPY":
            *sources, dest = rest.split()
            target = workdir / dest
            for source in sources:
                path = ROOT / source
                into = target / path.name if dest.endswith("/") else target
                if path.is_dir():
                    shutil.copytree(
                        path, into, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True
                    )
                else:
                    into.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, into)
        elif keyword == "RUN" and (copied := re.match(r"cp ((?:\S+ )+)src/", rest)):
            for name in copied.group(1).split():
                shutil.copy2(workdir / name, workdir / "src" / name)
    return workdir / "src"


def _pip(command: str, *args: str) -> None:
    """Run pip as the Dockerfile does: no dependencies fetched, the build backend already installed."""
    argv = [sys.executable, "-m", "pip", command, "--quiet", "--no-deps", "--no-build-isolation", *args]
    subprocess.run(argv, check=True, capture_output=True, timeout=120)


def build_wheel(source: Path, out: Path) -> list[str]:
    """Build the wheel the Dockerfile's ``pip install ./src`` builds, and list its files."""
    _pip("wheel", "-w", str(out), str(source))
    (wheel,) = out.glob("reaper-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


@pytest.fixture(scope="module")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The files the image's install puts into site-packages."""
    workdir = tmp_path_factory.mktemp("image")
    source = stage_build_context(DOCKERFILE.read_text(), workdir)
    return build_wheel(source, workdir / "dist")


def test_the_image_holds_the_function_and_its_companions(image_files: list[str]) -> None:
    """Everything the CMD, the FUNCTION_SOURCE and the companions' commands need is in the image."""
    source = re.search(r"FUNCTION_SOURCE=\S+/site-packages/(\S+)", DOCKERFILE.read_text())
    assert source is not None
    for needed in (
        source.group(1),
        "function/serve.py",
        "function/schemas/instance-expired.json",
        "reaper/cli.py",
        "reaper/companions/delay/api.py",
        "reaper/companions/rabbitmq_relay.py",
        "reaper/tools/send.py",
    ):
        assert needed in image_files


def test_the_image_holds_no_emulator_demo_or_bench(image_files: list[str]) -> None:
    """No developer tool and no benchmark ships."""
    assert [name for name in image_files if NOT_SHIPPED.search(name)] == []


def test_the_check_finds_a_dockerfile_that_ships_the_tools(tmp_path: Path) -> None:
    """Copying all of reaper/ (as the first draft did) puts the emulator and the demo in the file set."""
    careless = DOCKERFILE.read_text().replace(
        "COPY reaper/__init__.py reaper/cli.py ./src/reaper/", "COPY reaper ./src/reaper"
    )
    assert careless != DOCKERFILE.read_text()
    source = stage_build_context(careless, tmp_path)
    files = [str(path.relative_to(source)) for path in source.rglob("*.py")]
    assert any(NOT_SHIPPED.search(name) for name in files)


def test_a_developer_tool_says_it_is_not_in_the_image(tmp_path: Path) -> None:
    """`reaper demo` where only the image's files are installed: a clear refusal, not a traceback."""
    site = tmp_path / "site"
    workdir = tmp_path / "build"
    source = stage_build_context(DOCKERFILE.read_text(), workdir)
    _pip("install", "--target", str(site), str(source))
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-m", "reaper.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "a developer tool, not in this install" in done.stderr
    assert "Traceback" not in done.stderr
