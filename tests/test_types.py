"""Every package of the product type-checks under `mypy --strict`, as `make lint` runs it, so
the contracts between them are types a checker holds every caller to, and the suite fails
on a type error even where nobody ran the linter."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _packages() -> list[str]:
    makefile = (REPO / "Makefile").read_text()
    match = re.search(r"^PACKAGES := (.+)$", makefile, re.M)
    assert match, "the Makefile names the packages it type-checks"
    return match.group(1).split()


def test_every_package_is_listed():
    listed = set(_packages())
    found = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests", "benchmarks"}
    assert found <= listed, f"not type-checked: {sorted(found - listed)}"


def test_mypy_strict_finds_nothing(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path), *_packages()],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
