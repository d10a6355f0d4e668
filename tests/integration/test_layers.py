"""Issue 25: the rooms keep to their import rules, checked on the source, not trusted to review.

- ``function/core/`` (the pure decisions) imports the standard library and itself only;
- the companion services (the delay service and its store, the RabbitMQ relay) load no CloudDC client, no
  credentials and no inbound code: they run beside the function and must not carry its shell;
- the deployed function (``function/``) imports nothing of ``reaper/``: the command, the companions and the
  tools sit on top of it, never under it.
Each check is also run on a deliberately bad case, so a check that cannot fail would show here.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "function" / "core"
COMPANIONS = (
    "reaper.companions.delay.api",
    "reaper.companions.delay.store",
    "reaper.companions.rabbitmq_relay",
)
SHELL_ONLY = ("function.clouddc", "function.credentials", "function.inbound", "function.reaping")


def foreign_imports(source: str, room: str = "function.core") -> list[str]:
    """The modules ``source`` imports that are neither the standard library nor ``room`` (anywhere in the
    file: a function-level import counts as much as one at the top)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # a relative import stays inside the package
                continue
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if name == room or name.startswith(room + ".") or top in sys.stdlib_module_names:
                continue
            found.append(name)
    return found


def test_the_pure_core_imports_only_the_standard_library_and_itself() -> None:
    """Every module of ``function/core/``: no httpx, no settings, no adapter, nothing of the shell."""
    modules = sorted(CORE.glob("*.py"))
    assert {m.name for m in modules} >= {"__init__.py", "gate.py", "machine.py", "sweep.py", "ids.py"}
    offenders = {m.name: foreign_imports(m.read_text()) for m in modules}
    assert {name: found for name, found in offenders.items() if found} == {}


@pytest.mark.parametrize(
    "bad",
    [
        "import httpx",
        "from function import clouddc",
        "from function.settings import Settings",
        "def later():\n    from function.outbound import http11\n",
    ],
)
def test_the_core_rule_fails_on_a_deliberate_bad_import(bad: str) -> None:
    """The check is not vacuous: each of these, added to a core module, is reported."""
    source = (CORE / "gate.py").read_text() + "\n" + bad + "\n"
    assert foreign_imports(source) != []


def loaded_by(module: str) -> list[str]:
    """The reaper modules a fresh interpreter has loaded after importing ``module``."""
    probe = (
        f"import json, sys, {module}; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('function', 'reaper'))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    loaded: list[str] = json.loads(done.stdout)
    return loaded


@pytest.mark.parametrize("module", COMPANIONS)
def test_companions_load_no_clouddc_client_credentials_or_inbound_code(module: str) -> None:
    """A companion process carries nothing of the function's shell."""
    loaded = loaded_by(module)
    assert module in loaded
    assert [m for m in loaded if m.startswith(SHELL_ONLY)] == []


def test_the_companion_rule_fails_on_a_module_that_carries_the_shell() -> None:
    """The same check on the function's own handler finds the shell: it would catch a companion that did."""
    loaded = loaded_by("function.reaping")
    assert [m for m in loaded if m.startswith(SHELL_ONLY)] != []


def _function_imports_of_reaper(source: str) -> list[str]:
    return [name for name in foreign_imports(source, room="function") if name.split(".")[0] == "reaper"]


def test_the_function_imports_nothing_of_the_command_companions_or_tools() -> None:
    """No module under ``function/`` reaches into ``reaper/``."""
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in sorted((ROOT / "function").rglob("*.py"))
        if (found := _function_imports_of_reaper(path.read_text()))
    }
    assert offenders == {}


def test_the_function_rule_fails_on_a_deliberate_bad_import() -> None:
    """What ``reaping`` once did (a constant from the explain tool) is reported."""
    source = (ROOT / "function" / "reaping.py").read_text() + "\nfrom reaper.tools.explain import explain\n"
    assert _function_imports_of_reaper(source) == ["reaper.tools.explain"]
