"""Compare the environment of the running interpreter with a lock file's pins.

`python requirements/check_lock.py LOCK` exits 1 unless `pip freeze --all` (without pip and
the editable project) equals the pins of LOCK that apply to this interpreter; `--report` only
prints the differences (how `make test-latest` shows drift). Needs `packaging`, which both
locks hold, to evaluate a pin's environment marker.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def lock_pins(lock: Path) -> dict[str, str]:
    """The `name: version` pins of a pip-style lock whose markers hold for this interpreter."""
    pins: dict[str, str] = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line)
        if match is None:
            continue
        name, version, marker = match.groups()
        if marker is None or Marker(marker).evaluate():
            pins[canonicalize_name(name)] = version
    return pins


def installed() -> dict[str, str]:
    """What `pip freeze --all` reports for this interpreter, less pip and editable installs."""
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--all", "--exclude", "pip", "--exclude-editable"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found: dict[str, str] = {}
    for line in frozen.splitlines():
        name, sep, version = line.partition("==")
        if sep:
            found[canonicalize_name(name)] = version
    return found


def differences(pins: dict[str, str], found: dict[str, str]) -> list[str]:
    """One line per package whose installed version is not the locked one."""
    lines = []
    for name in sorted(pins.keys() | found.keys()):
        locked, got = pins.get(name), found.get(name)
        if locked != got:
            lines.append(f"{name}: locked {locked or '-'}, installed {got or '-'}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", type=Path)
    parser.add_argument("--report", action="store_true", help="print differences, exit 0")
    args = parser.parse_args()
    pins = lock_pins(args.lock)
    diff = differences(pins, installed())
    if args.report:
        print(f"{len(diff)} packages differ from {args.lock}:", *diff, sep="\n  ")
        return 0
    if diff:
        print(f"the environment differs from {args.lock}:", *diff, sep="\n  ", file=sys.stderr)
        return 1
    print(f"pip freeze equals the {len(pins)} pins of {args.lock}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
