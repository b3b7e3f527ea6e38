"""A start sweeps the private directories that killed services left behind, and nothing else."""

import os
import subprocess
import sys

from serving import run_dirs


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_start_removes_the_directories_of_dead_masters_only(tmp_path):
    dead, root = _dead_pid(), str(tmp_path)
    orphan = tmp_path / f"{run_dirs.METRICS}{dead}-k2j4"
    (orphan / "sub").mkdir(parents=True)
    (orphan / "sub" / "counter_1.db").write_bytes(b"x")
    other_kind = tmp_path / f"{run_dirs.SHIPPER}{dead}-a8f1"
    other_kind.mkdir()
    live = tmp_path / f"{run_dirs.METRICS}{os.getppid()}-q0v8"
    live.mkdir()
    kept = [
        live,
        tmp_path / f"{run_dirs.METRICS}x1y2z3",  # a name from before pids: not known dead
        tmp_path / f"{dead}-unrelated",
        other_kind,
    ]
    for path in kept[1:3]:
        path.mkdir()
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / f"{run_dirs.METRICS}{dead}-link"
    link.symlink_to(target)

    mine = run_dirs.make(run_dirs.METRICS, root)

    assert not orphan.exists()
    assert all(path.is_dir() for path in kept)
    assert link.is_symlink() and target.is_dir()
    assert os.path.basename(mine).startswith(f"{run_dirs.METRICS}{os.getpid()}-")
    assert run_dirs.sweep(run_dirs.METRICS, root) == []  # its own stays: this process lives
    assert run_dirs.sweep(run_dirs.SHIPPER, root) == [str(other_kind)]


def test_a_temp_directory_that_cannot_be_listed_is_not_an_error(tmp_path):
    assert run_dirs.sweep(run_dirs.METRICS, str(tmp_path / "missing")) == []
