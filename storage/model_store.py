"""Policy versions on disk: `<root>/<slot>/<version>.policy`, written atomically.

A file is a magic line, one JSON metadata line (which holds the payload's size and SHA-256)
and the payload (VW model bytes, or a baseline's state). Writes go to a temp file that is
fsynced and then hard-linked into place, so a reader sees a whole version or none, and two
writers never overwrite each other. A truncated or corrupted file is refused with
`CorruptVersion`; `load_latest` then falls back to the newest version that is whole.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import msgspec

from bandit import __version__
from bandit.contracts.slots import SlotConfig
from bandit.learning.tuning import TuningState, tuned_slot
from bandit.measurement.tallies import PartitionTally
from bandit.policies import Policy, policy_class
from storage.durable import create_file, replace_file

MAGIC = b"artbandit-policy/1\n"
UNTRAINED = "untrained"  # the version serving reports before a slot has a stored one
_VERSION_RE = re.compile(r"^v(\d{8})\.policy$")
_SHORT_VERSION_RE = re.compile(r"^v?(\d{1,8})$")


def canonical_version(version: str) -> str:
    """`v12`, `12` and `v00000012` all name the version stored as `v00000012`; any other
    name is returned as it is (and found, or not, as it is)."""
    short = _SHORT_VERSION_RE.match(version)
    return f"v{int(short.group(1)):08d}" if short else version


_TALLY_RE = re.compile(r"^lift-p(\d+)\.tally$")


class ModelStoreError(Exception):
    """No usable version, or the store itself cannot be used."""


class CorruptVersion(ModelStoreError):
    """A version file that is truncated, altered or not a policy file."""


@dataclass(frozen=True)
class VersionInfo:
    """Metadata of one stored policy version."""

    slot: str
    version: str
    created_at: float
    examples_learned: int
    policy_type: str
    sha256: str
    size: int
    slot_config: dict[str, Any]
    artbandit_version: str = __version__
    # The self-tuning revision and overrides the policy learned under (bandit.learning.tuning):
    # whoever loads it lays the overrides over its own slot config.
    tuning_revision: int = 0
    tuned: list[str] = field(default_factory=list)
    # A raised exploration floor (bandit.policies.base.Boost) that the learner's change
    # detector opened, served until the policy has learned `boost_until` examples.
    boost_floor: float = 0.0
    boost_until: int = 0


@dataclass(frozen=True)
class StoredPolicy:
    info: VersionInfo
    policy: Policy


class ModelStore:
    """A directory of policy versions, one subdirectory per slot."""

    def __init__(self, root: str | os.PathLike[str], keep_versions: int = 20):
        self.root = Path(root)
        self.keep_versions = keep_versions

    def save(
        self, slot: str, policy: Policy, tuning_revision: int = 0, tuned: list[str] | None = None
    ) -> VersionInfo:
        """Store `policy` as the next version of `slot` (learned under tuning revision
        `tuning_revision`, whose overrides are `tuned`) and return its metadata."""
        payload = policy.to_bytes()
        while True:
            info = VersionInfo(
                slot=slot,
                version=f"v{self._next_number(slot):08d}",
                created_at=time.time(),
                examples_learned=policy.examples_learned,
                policy_type=policy.type_name,
                sha256=hashlib.sha256(payload).hexdigest(),
                size=len(payload),
                slot_config=msgspec.to_builtins(policy.slot),
                tuning_revision=tuning_revision,
                tuned=list(tuned or []),
                boost_floor=policy.boost.floor if policy.boost else 0.0,
                boost_until=policy.boost.until if policy.boost else 0,
            )
            data = MAGIC + json.dumps(asdict(info)).encode() + b"\n" + payload
            if create_file(self._path(slot, info.version), data):
                break  # else a concurrent writer took the number: take the next one
        self._prune(slot)
        return info

    def versions(self, slot: str) -> list[str]:
        """Version ids of `slot`, oldest first (whole or not)."""
        directory = self.root / slot
        if not directory.is_dir():
            return []
        names = sorted(m.group(0) for p in directory.iterdir() if (m := _VERSION_RE.match(p.name)))
        return [name.removesuffix(".policy") for name in names]

    def read_info(self, slot: str, version: str) -> tuple[VersionInfo, bytes]:
        """Metadata and payload of one version, verified; raises `CorruptVersion`. Messages
        name the version, never the store's path (they reach admin API answers)."""
        version = canonical_version(version)
        path = self._path(slot, version)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            stored = self.versions(slot)
            known = (f"stored: {stored[0]} to {stored[-1]}, {len(stored)} versions" if stored
                     else f"no version of {slot} is stored")  # fmt: skip
            raise ModelStoreError(f"{slot}/{version}: no such version ({known})") from None
        info, payload = parse_version_file(data, f"{slot}/{version}")
        if (info.slot, info.version) != (slot, version):
            raise CorruptVersion(f"{slot}/{version}: holds {info.slot}/{info.version}")
        return info, payload

    def version_file(self, slot: str, version: str) -> bytes:
        """The verified bytes of one version file, as `install` takes them elsewhere."""
        self.read_info(slot, version)
        return self._path(slot, canonical_version(version)).read_bytes()

    def install(self, data: bytes) -> VersionInfo:
        """Add a version file published by a learner (e.g. from `artbandit.models`) under its
        own name; verified first, and a no-op when this store already holds it."""
        info, _ = parse_version_file(data, "published version")
        if not _VERSION_RE.match(f"{info.version}.policy") or "/" in info.slot or not info.slot:
            raise CorruptVersion(f"published version: bad name {info.slot!r}/{info.version!r}")
        path = self._path(info.slot, info.version)
        if not path.exists():
            create_file(path, data)  # False only for a concurrent install of the same file
            self._prune(info.slot)
        return info

    def _path(self, slot: str, version: str) -> Path:
        return self.root / slot / f"{version}.policy"

    def load(self, slot: str, version: str, slot_config: SlotConfig | None = None) -> StoredPolicy:
        """Load one version as a live policy. `slot_config` overrides the stored config
        (e.g. a new exploration setting), with the version's tuned overrides laid over it;
        by default the version's own config is used."""
        info, payload = self.read_info(slot, version)
        if slot_config is None:
            config = msgspec.convert(info.slot_config, SlotConfig)
        else:
            try:
                config = tuned_slot(slot, slot_config, info.tuned)
            except ValueError as exc:
                raise CorruptVersion(f"{slot}/{version}: its tuned settings: {exc}") from None
        try:
            policy = policy_class(config).from_bytes(config, payload)
        except OSError as exc:  # VW loads through a temp file: the disk, not the version
            raise ModelStoreError(f"{slot}/{version}: cannot load policy now ({exc})") from exc
        except Exception as exc:  # VW's own errors vary; the version is unusable either way
            raise CorruptVersion(f"{slot}/{version}: cannot load policy ({exc})") from exc
        policy.examples_learned = info.examples_learned
        policy.restore_boost(info.boost_floor, info.boost_until)
        return StoredPolicy(info, policy)

    def load_latest(self, slot: str, slot_config: SlotConfig | None = None) -> StoredPolicy:
        """The newest whole version of `slot`; corrupt newer ones are skipped."""
        problems = []
        for version in reversed(self.versions(slot)):
            try:
                return self.load(slot, version, slot_config)
            except CorruptVersion as exc:
                problems.append(str(exc))
        detail = f": {'; '.join(problems)}" if problems else ""
        raise ModelStoreError(f"no usable version of slot {slot!r} in {self.root}{detail}")

    def pin(self, slot: str, version: str | None) -> None:
        """Serve `version` of `slot` instead of the newest (None: follow the newest again).

        The pin is a file beside the versions, so every serving worker and replica sharing
        the store sees it on its next reload.
        """
        path = self.root / slot / "PINNED"
        if version is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
        _write_atomically(path, version)

    def pinned(self, slot: str) -> str | None:
        return _read_marker(self.root / slot / "PINNED")

    def wanted_version(self, slot: str) -> str | None:
        """What serving should run: the pinned version, else the newest one."""
        pinned = self.pinned(slot)
        if pinned is not None:
            return pinned
        versions = self.versions(slot)
        return versions[-1] if versions else None

    def signal_reload(self) -> str:
        """Ask every process serving from this store to re-read its config; returns the token."""
        token = f"{time.time_ns()}-{os.getpid()}"
        _write_atomically(self.root / "RELOAD", token)
        return token

    def reload_signal(self) -> str | None:
        return _read_marker(self.root / "RELOAD")

    def write_tally(self, tally: PartitionTally) -> bool:
        """Keep `tally` as its slot's and partition's lift sums unless the stored one is at
        least as far along (two members hand a partition over); True when written."""
        path = self.root / tally.slot / f"lift-p{tally.partition}.tally"
        stored = _read_tally(path)
        if stored is not None and stored.topic == tally.topic and stored.order >= tally.order:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(path, msgspec.msgpack.encode(tally))
        return True

    def tallies(self, slot: str) -> list[PartitionTally]:
        """The newest lift sums of every partition of `slot` (unreadable files skipped)."""
        directory = self.root / slot
        if not directory.is_dir():
            return []
        found = (_read_tally(p) for p in sorted(directory.iterdir()) if _TALLY_RE.match(p.name))
        return [t for t in found if t is not None and t.slot == slot]

    def tuning(self, slot: str) -> TuningState:
        """`slot`'s tuning history (empty: the configured settings run)."""
        path = self.root / slot / "tuning.json"
        try:
            return msgspec.json.decode(path.read_bytes(), type=TuningState)
        except FileNotFoundError:
            return TuningState(slot=slot)
        except msgspec.DecodeError as exc:
            raise ModelStoreError(f"{slot}: the tuning history is unreadable ({exc})") from None

    def update_tuning(self, slot: str, change: Callable[[TuningState], TuningState]) -> TuningState:
        """Apply `change` to `slot`'s tuning history under a lock (the tuner and the admin
        API both write it) and keep the result."""
        with self._locked(slot, "tuning.lock"):
            updated = change(self.tuning(slot))
            replace_file(self.root / slot / "tuning.json", msgspec.json.encode(updated))
        return updated

    @contextlib.contextmanager
    def _locked(self, slot: str, name: str) -> Iterator[None]:
        path = self.root / slot / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _next_number(self, slot: str) -> int:
        existing = self.versions(slot)
        return int(existing[-1][1:]) + 1 if existing else 1

    def _prune(self, slot: str) -> None:
        pinned = self.pinned(slot)
        for version in self.versions(slot)[: -self.keep_versions]:
            if version == pinned:
                continue
            with contextlib.suppress(FileNotFoundError):
                (self.root / slot / f"{version}.policy").unlink()


def parse_version_file(data: bytes, where: str) -> tuple[VersionInfo, bytes]:
    """Split and verify a version file; raises `CorruptVersion` naming `where`."""
    if not data.startswith(MAGIC):
        raise CorruptVersion(f"{where}: not an artbandit policy file")
    header, sep, payload = data[len(MAGIC) :].partition(b"\n")
    known = {f.name for f in fields(VersionInfo)}
    try:  # fields a newer release added are ignored, as event readers do
        info = VersionInfo(**_known(json.loads(header), known)) if sep else None
    except (ValueError, TypeError) as exc:
        raise CorruptVersion(f"{where}: unreadable metadata ({exc})") from None
    if info is None:
        raise CorruptVersion(f"{where}: truncated inside its metadata")
    if len(payload) != info.size:
        raise CorruptVersion(f"{where}: truncated ({len(payload)} of {info.size} bytes)")
    if hashlib.sha256(payload).hexdigest() != info.sha256:
        raise CorruptVersion(f"{where}: checksum mismatch, the file was altered")
    return info, payload


def _known(header: Any, names: set[str]) -> Any:
    return {k: v for k, v in header.items() if k in names} if isinstance(header, dict) else header


def _write_atomically(path: Path, text: str) -> None:
    """Replace a small marker file (pin, reload signal) so readers see old or new, never half."""
    replace_file(path, text.encode())


def _read_tally(path: Path) -> PartitionTally | None:
    try:
        return msgspec.msgpack.decode(path.read_bytes(), type=PartitionTally)
    except (FileNotFoundError, msgspec.DecodeError):
        return None


def _read_marker(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None
