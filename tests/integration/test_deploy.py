"""deploy/: manifests parse, units verify, scripts and the Dockerfile lint, and every variable is real."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from function.settings import REQUIRED, SERVER_VARIABLES, VARIABLES

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
KNOWN = VARIABLES | SERVER_VARIABLES


def pair(text: str) -> tuple[str, str]:
    """``NAME=value`` as (NAME, value)."""
    name, _, value = text.partition("=")
    return name, value


def knative_service_env() -> dict[str, str]:
    [service] = list(yaml.safe_load_all((DEPLOY / "knative" / "service.yaml").read_text()))
    [container] = service["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "<secret>") for e in container["env"]}


def functiongraph_env() -> dict[str, str]:
    function = json.loads((DEPLOY / "functiongraph" / "function.json").read_text())
    return {**json.loads(function["user_data"]), **json.loads(function["encrypted_user_data"])}


def cloudrun_env() -> dict[str, str]:
    script = (DEPLOY / "cloudrun" / "deploy.sh").read_text()
    env: dict[str, str] = {}
    for group in re.findall(r'--(?:set|update)-env-vars="([^"]+)"', script):
        env.update(pair(item) for item in group.split(","))
    for group in re.findall(r'--set-secrets="([^"]+)"', script):
        # NAME=secret:version is an environment variable; /path=secret:version a mounted file.
        env.update(pair(item) for item in group.split(",") if not item.startswith("/"))
    return env


def env_file(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return dict(pair(line) for line in lines)


def unit_env(path: Path) -> dict[str, str]:
    return dict(
        pair(line.removeprefix("Environment="))
        for line in path.read_text().splitlines()
        if line.startswith("Environment=")
    )


def dockerfile_env() -> dict[str, str]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(pair(item) for item in line[4:].split())
    return env


DEPLOYMENTS: dict[str, Callable[[], dict[str, str]]] = {
    "knative service": knative_service_env,
    "functiongraph function": functiongraph_env,
    "cloud run": cloudrun_env,
    "vm env file": lambda: env_file(DEPLOY / "vm" / "reaper.env"),
}


def test_settings_variables_are_listed() -> None:
    """VARIABLES names every variable Settings.from_env reads (so the checks below mean something)."""
    source = (ROOT / "function" / "settings.py").read_text()
    read = set(re.findall(r'env(?:\.get)?\(\s*"([A-Z_]+)"', source)) | set(
        re.findall(r'env, "([A-Z_]+)"', source)
    )
    assert read
    assert read <= VARIABLES


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_deployments_set_only_real_settings_and_all_required(name: str) -> None:
    """Each deployment sets only variables reaper (or its server) reads, and every required one."""
    env = DEPLOYMENTS[name]()
    assert set(env) <= KNOWN, set(env) - KNOWN
    for required in REQUIRED:
        options = required if isinstance(required, tuple) else (required,)
        if name == "functiongraph function":
            options = (*options, "REAPER_TOKEN_FROM_REQUEST")
        assert set(options) & set(env), f"{name} sets none of {options}"


def test_units_and_dockerfile_set_only_real_settings() -> None:
    """The systemd units' Environment= lines and the Dockerfile's ENV name real variables."""
    names = set(dockerfile_env())
    for unit in (DEPLOY / "vm").glob("*.service"):
        names |= set(unit_env(unit))
    assert names <= KNOWN, names - KNOWN


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.yaml")), ids=lambda p: p.name)
def test_manifests_parse(path: Path) -> None:
    """Every manifest is valid YAML and every document names its apiVersion and kind."""
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert documents
    for document in documents:
        assert document["apiVersion"]
        assert document["kind"]
        assert document["metadata"]["name"]


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.json")), ids=lambda p: p.name)
def test_json_bodies_parse(path: Path) -> None:
    """Every JSON request body in deploy/ parses."""
    assert json.loads(path.read_text())


def test_systemd_units_verify(tmp_path: Path) -> None:
    """systemd-analyze verify finds no problem in the units (in a scratch root with stub binaries)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    (tmp_path / "usr" / "lib" / "systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", tmp_path / "usr" / "lib" / "systemd" / "system", symlinks=True)
    stubs = tmp_path / "opt" / "reaper" / "venv" / "bin"
    stubs.mkdir(parents=True)
    for name in ("reaper", "functions-framework"):
        (stubs / name).write_text("#!/bin/sh\n")
        (stubs / name).chmod(0o755)
    units = tmp_path / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    names = []
    for unit in (DEPLOY / "vm").glob("*.service"):
        shutil.copy(unit, units)
        names.append(unit.name)
    done = subprocess.run(
        [analyze, "verify", "--man=no", f"--root={tmp_path}", *names],
        cwd=units,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""


@pytest.mark.parametrize(
    "script", [DEPLOY / "cloudrun" / "deploy.sh", ROOT / ".ci" / "run"], ids=lambda p: p.name
)
def test_shell_scripts_pass_bash_n_and_shellcheck(script: Path) -> None:
    """Shell scripts parse (bash -n) and pass shellcheck."""
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    done = subprocess.run([str(BIN / "shellcheck"), str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_dockerfile_passes_hadolint() -> None:
    """The Dockerfile passes hadolint (no Docker engine here to build it)."""
    done = subprocess.run([str(BIN / "hadolint"), str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
    env = dockerfile_env()
    assert env["FUNCTION_TARGET"] == "handle_http"
    assert "USER 10001" in (DEPLOY / "Dockerfile").read_text()
