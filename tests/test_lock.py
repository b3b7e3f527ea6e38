"""The locked dependency set: the test venv is exactly the lock, and the two locks agree."""

import importlib.util
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_lock", REPO / "requirements/check_lock.py")
check_lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_lock)

DEV = check_lock.lock_pins(REPO / "requirements/dev.lock")
RUNTIME = check_lock.lock_pins(REPO / "requirements/runtime.lock")


@pytest.mark.locked_env
def test_installed_environment_is_exactly_the_dev_lock():
    assert check_lock.differences(DEV, check_lock.installed()) == []


def test_runtime_lock_is_the_dev_lock_pins_of_its_packages():
    assert {name: DEV.get(name) for name in RUNTIME} == RUNTIME


def test_every_declared_dependency_is_locked_within_its_range():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + [
        spec for extra in project["optional-dependencies"].values() for spec in extra
    ]
    for spec in map(Requirement, declared):
        version = DEV.get(canonicalize_name(spec.name))
        assert version is not None, f"{spec.name} is not in requirements/dev.lock"
        assert spec.specifier.contains(version), f"{spec.name}=={version} is outside {spec}"


def test_a_pin_whose_marker_does_not_hold_is_left_out(tmp_path):
    lock = tmp_path / "x.lock"
    lock.write_text(
        "numpy==2.0.0 ; python_full_version < '3.0' \\\n    --hash=sha256:00\n"
        "numpy==2.4.6 ; python_full_version >= '3.0' \\\n"
        "Flask==3.1.3 \\\n    --hash=sha256:11\n    # via artbandit\n"
    )
    assert check_lock.lock_pins(lock) == {"numpy": "2.4.6", "flask": "3.1.3"}
    assert check_lock.differences({"flask": "3.1.3"}, {"flask": "3.1.2", "x": "1"}) == [
        "flask: locked 3.1.3, installed 3.1.2",
        "x: locked -, installed 1",
    ]
