"""The work directory: artifacts, ``manifest.json``, atomic writes, versions of the tools that ran.

Every file is written to a temporary name in the same folder, flushed, then renamed over the target,
so an interrupted or failed step leaves the previous artifact intact and never a half-written one
where the next step would pick it up.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rn50 import __version__
from rn50.errors import UsageError, check_interrupt, uninterrupted
from rn50.words import cmd, opt

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

DEFAULT_WORKDIR = Path("rn50-out")
MANIFEST = "manifest.json"
LOCK = ".rn50.lock"
PARTIAL = ".partial"  # suffix of every file being written (see atomic_path)
# The command that makes each artifact: the fix when one is missing or changed.
MADE_BY = {
    "onnx-fp32": str(cmd("export")),
    "weights-seeded": str(cmd("export")),
    "onnx-fp16": str(cmd("quantize", fp16=True)),
    "onnx-int8-tensorrt": str(cmd("quantize", int8=True, target="tensorrt")),
    "onnx-int8-onnxruntime-cpu": str(cmd("quantize", int8=True, target="onnxruntime-cpu")),
    "engine-fp32": str(cmd("build-trt")),
    "engine-fp16": str(cmd("build-trt", fp16=True)),
    "engine-int8": str(cmd("build-trt", int8=True)),
}


def made_by(name: str) -> str:
    if name.startswith("ir-"):
        return str(cmd("export", ir=True)) if name.startswith("ir-fp32") else str(cmd("quantize", ir=True))
    return MADE_BY.get(
        name, str(cmd("calibrate")) if name.startswith("calibration-") else "the rn50 command that made it"
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def no_space(path: str | Path | None) -> UsageError:
    """A full disk, named with the file that was being written and the way out for where it lies: a file under the
    temporary folder needs room there (TMPDIR), not another --out."""
    import tempfile

    if path is None:
        return UsageError(
            "no space left on the device", fix=f"free some space, or pass {opt('out')} (or TMPDIR) on another disk"
        )
    tmp = Path(tempfile.gettempdir()).resolve()
    inside_tmp = Path(path).resolve().is_relative_to(tmp)
    return UsageError(
        f"no space left on the device writing {path}",
        fix=f"free some space in {tmp} or set TMPDIR to a folder on a disk with room"
        if inside_tmp
        else f"free some space or pass {opt('out')} on another disk",
    )


def _os_error(path: Path, e: OSError) -> UsageError:
    if e.errno == errno.ENOSPC:
        return no_space(path)
    if e.errno == errno.EROFS:
        return UsageError(
            f"cannot write {path}: the file system is read-only", fix=f"pass {opt('out')} a folder on a writable disk"
        )
    if e.errno in (errno.EACCES, errno.EPERM):
        return UsageError(
            f"cannot write {path} (permission denied)", fix=f"pass {opt('out')} a directory you can write to"
        )
    return UsageError(
        f"cannot write {path}: {e.strerror or e}", fix=f"check the path and pass {opt('out')} a writable directory"
    )


@contextlib.contextmanager
def atomic_path(target: Path, *, then: Callable[[], None] | None = None) -> Iterator[Path]:
    """Yields a temporary path next to ``target``; on success it replaces ``target``, else it is removed. ``then``
    (recording the new file in the manifest) runs right after the replace, and an interrupt waits for both."""
    target = Path(target)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=PARTIAL, dir=target.parent)
        os.close(fd)
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts get ordinary permissions
    except OSError as e:
        raise _os_error(target, e) from e
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        check_interrupt()  # nothing is committed after Ctrl-C/SIGTERM, even one a library swallowed
        with uninterrupted():
            os.replace(tmp, target)
            if then is not None:
                then()
    except OSError as e:
        raise _os_error(target, e) from e
    finally:  # also on KeyboardInterrupt
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: Path, text: str) -> None:
    atomic_write_bytes(target, text.encode())


def dist_version(dist: str) -> str | None:
    """An installed distribution's version, or None (read from metadata: nothing is imported)."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, Any]:
    """Versions of everything that can change a result, read without importing heavy modules."""
    ort = dist_version("onnxruntime") or dist_version("onnxruntime-gpu")
    out: dict[str, Any] = {
        "rn50": __version__,
        "python": platform.python_version(),
        "torch": dist_version("torch"),
        "onnx": dist_version("onnx"),
        "onnxruntime": ort,
        "onnxsim": dist_version("onnxsim"),
        "tensorrt": dist_version("tensorrt") or dist_version("tensorrt-cu12") or dist_version("tensorrt-cu13"),
        "machine": platform.machine(),
    }
    if "torch" in sys.modules:  # only when already loaded: no import cost for light commands
        torch = sys.modules["torch"]
        out["cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            cap = torch.cuda.get_device_capability()
            out["gpu"] = torch.cuda.get_device_name()
            out["compute_capability"] = f"{cap[0]}.{cap[1]}"
    return out


ARTIFACT_TEXT_FIELDS = ("name", "path", "kind", "precision", "sha256")


def leaves_root(relative: str) -> bool:
    """Whether a path a manifest records leads out of the work directory (absolute, or up through ``..``)."""
    from pathlib import PurePosixPath, PureWindowsPath

    return (
        PurePosixPath(relative).is_absolute()
        or ".." in PurePosixPath(relative).parts
        or bool(PureWindowsPath(relative).drive)
    )


def _manifest_problem(data: dict[str, Any]) -> str | None:
    """The first wrong field of a parsed manifest, or None: a manifest is taken whole or not at all."""
    model = data.get("model")
    if model is not None and not (
        isinstance(model, dict) and isinstance(model.get("weights_sha256"), str) and isinstance(model.get("depth"), int)
    ):
        return "model: expected {depth: int, weights: str, weights_sha256: str}"
    for key, entry in data["artifacts"].items():
        if not isinstance(entry, dict):
            return f"artifacts.{key}: expected an object"
        unknown = sorted(set(entry) - set(Artifact.__dataclass_fields__))
        if unknown:
            return f"artifacts.{key}: unknown field(s) {', '.join(unknown)}"
        for field_name in ARTIFACT_TEXT_FIELDS:
            if not isinstance(entry.get(field_name), str):
                return f"artifacts.{key}.{field_name}: expected a string, found {type(entry.get(field_name)).__name__}"
        if leaves_root(entry["path"]):
            return f"artifacts.{key}.path: {entry['path']} leaves the work directory (artifacts are files inside it)"
        if entry.get("parent_sha256") is not None and not isinstance(entry["parent_sha256"], str):
            return f"artifacts.{key}.parent_sha256: expected a string"
        for field_name in ("config", "versions", "extra"):
            if not isinstance(entry.get(field_name, {}), dict):
                return f"artifacts.{key}.{field_name}: expected an object"
    steps = data.get("steps", {})
    if not isinstance(steps, dict) or not all(
        isinstance(s, dict) and isinstance(s.get("outputs", {}), dict) for s in steps.values()
    ):
        return "steps: expected {step: {key, outputs: {path: sha256}}}"
    for step, entry in steps.items():
        outside = [rel for rel in entry.get("outputs", {}) if leaves_root(str(rel))]
        if outside:
            return f"steps.{step}.outputs: {outside[0]} leaves the work directory"
    return None


def _lock_holder(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


@dataclass(frozen=True)
class Artifact:
    name: str  # manifest key, e.g. "onnx-fp32"
    path: str  # relative to the work directory
    kind: str  # onnx | engine | calibration-table | report
    precision: str  # fp32 | fp16 | int8 | -
    sha256: str
    parent_sha256: str | None
    config: dict[str, Any]
    versions: dict[str, Any]
    verified: bool | None = None
    created: float = field(default_factory=time.time)
    extra: dict[str, Any] = field(default_factory=dict)


def changed_input(name: str, before: Any, now: Any) -> str:
    """One changed step input, as "ran again" words it: short values shown, long ones (digests, tables) named."""
    if all(isinstance(v, (str, int, float, bool)) or v is None for v in (before, now)) and len(f"{before}{now}") <= 40:
        return f"{name} {before} → {now}"
    return name


class WorkDir:
    """A work directory and its manifest. Creating it checks that it can be written."""

    def __init__(self, root: Path | str = DEFAULT_WORKDIR, *, write: bool = True):
        """``write`` False: a directory only read (rn50 verify, rn50 serve), which may be read-only."""
        self.root = Path(root)
        self.created = not self.root.exists()  # made by this run: removed again if the run leaves nothing in it
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(
                f"output path {self.root} is a file, not a directory", fix=f"pass {opt('out')} a directory"
            )
        if not write:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.root, prefix=".rn50-write-check.")
            probe.close()
        except OSError as e:
            raise _os_error(self.root, e) from e

    @classmethod
    def existing(cls, root: Path | str, *, write: bool = True) -> WorkDir:
        """A work directory that must already hold a manifest (``write`` False: it is only read)."""
        root = Path(root)
        if not (root / MANIFEST).is_file():
            raise UsageError(
                f"{root} is not an rn50 work directory (no {MANIFEST})",
                fix=f"pass {opt('out')} the directory {cmd('export')} wrote, or run `{cmd('export', out=root)}` first",
            )
        return cls(root, write=write)

    def path(self, relative: str) -> Path:
        return self.root / relative

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One rn50 run per work directory. A lock left by a process that no longer runs is taken over (and
        said so); then files a killed run left half-written are removed."""
        lock = self.root / LOCK
        mine = lock.with_name(f"{LOCK}.{os.getpid()}")  # written whole, then linked into place atomically
        try:
            mine.write_text(f"{os.getpid()}\n")
            while True:
                try:
                    os.link(mine, lock)
                    break
                except FileExistsError:
                    holder = _lock_holder(lock)
                    if holder is not None and _running(holder):
                        raise UsageError(
                            f"{self.root} is in use by another rn50 run (PID {holder})",
                            fix=f"wait for it to finish, or pass {opt('out')} another directory",
                        ) from None
                    log.warning(
                        "%s: took over the lock of %s, which is no longer running",
                        self.root,
                        f"PID {holder}" if holder is not None else "an unknown process",
                    )
                    lock.unlink(missing_ok=True)
        except OSError as e:
            raise _os_error(lock, e) from e
        finally:
            mine.unlink(missing_ok=True)
        try:
            self._remove_partials()
            yield
        finally:
            lock.unlink(missing_ok=True)
            if self.created:
                with contextlib.suppress(OSError):  # not empty: the run wrote something, which stays
                    self.root.rmdir()

    def _remove_partials(self) -> None:
        left = sorted(p for p in self.root.rglob(f".*{PARTIAL}") if p.is_file())
        for p in left:
            p.unlink(missing_ok=True)
        if left:
            log.warning(
                "removed %d half-written file(s) an interrupted run left in %s: %s",
                len(left),
                self.root,
                ", ".join(p.name for p in left[:3]) + (" …" if len(left) > 3 else ""),
            )

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def head(self) -> str:
        """What the model's output is ("classifier" or "embedding", recorded by export; older directories: a
        classifier)."""
        model = self.manifest().get("model") or {}
        return str(model.get("head") or "classifier")

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"rn50": __version__, "model": None, "artifacts": {}}
        try:
            data = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError) as e:
            raise UsageError(
                f"{self.manifest_path} is not a readable manifest ({e})",
                fix=f"remove it (its artifacts will be rebuilt) or pass {opt('out')} another directory",
            ) from e
        if not isinstance(data, dict) or not isinstance(data.get("artifacts"), dict):
            raise UsageError(
                f"{self.manifest_path} is not an rn50 manifest", fix=f"pass {opt('out')} another directory"
            )
        wrong = _manifest_problem(data)
        if wrong:
            raise UsageError(
                f"{self.manifest_path} is malformed: {wrong}",
                fix=f"restore it, or remove it and re-run the steps ({cmd('pipeline')} rebuilds everything)",
            )
        return data

    def check_model(self, model: dict[str, Any]) -> None:
        """Refuse a directory whose artifacts were made from another model (depth or weights)."""
        held = self.manifest().get("model")
        if held and (held.get("depth"), held.get("weights_sha256")) != (model["depth"], model["weights_sha256"]):
            raise UsageError(
                f"{self.root} holds artifacts of another model (ResNet-{held.get('depth')}, weights "
                f"{str(held.get('weights_sha256'))[:12]}, from {held.get('weights')})",
                fix=f"pass {opt('out')} a new directory, or remove the old one",
            )

    def record(self, artifact: Artifact, *, model: dict[str, Any] | None = None) -> None:
        data = self.manifest()
        if model is not None:
            data["model"] = model
        data["rn50"] = __version__
        data["artifacts"][artifact.name] = asdict(artifact)
        atomic_write_text(self.manifest_path, json.dumps(data, indent=2, sort_keys=True) + "\n")
        log.info("manifest: recorded %s -> %s", artifact.name, artifact.path)

    def artifact(self, name: str) -> Artifact | None:
        entry = self.manifest()["artifacts"].get(name)
        return Artifact(**entry) if entry else None

    def artifacts(self) -> list[Artifact]:
        return [Artifact(**e) for e in self.manifest()["artifacts"].values()]

    def by_name(self, wanted: list[str] | None = None) -> dict[str, Artifact]:
        """Every artifact by its name; a name in ``wanted`` (an --artifact filter) that is not among them is refused."""
        known = {a.name: a for a in self.artifacts()}
        missing = [a for a in wanted or [] if a not in known]
        if missing:
            none_yet = f"(none: run {cmd('export')} first)"
            raise UsageError(
                f"no artifact named {', '.join(missing)} in {self.manifest_path}",
                fix=f"use one of {', '.join(known) or none_yet}",
            )
        return known

    def checked(self, art: Artifact) -> Path:
        """The artifact's path, after checking that its file is there and still has the recorded sha256."""
        path = self.path(art.path)
        fix = f"re-run `{made_by(art.name)} {opt('out')} {self.root}` to make it again"
        if not path.is_file():
            raise UsageError(f"{art.name}: {path} is missing", fix=fix)
        if not path.resolve().is_relative_to(self.root.resolve()):  # a link out of the directory
            raise UsageError(f"{art.name}: {art.path} leads out of the work directory (to {path.resolve()})", fix=fix)
        digest = sha256_file(path)
        if digest != art.sha256:
            raise UsageError(
                f"{art.name}: {path} changed since it was made (sha256 {digest[:12]}, manifest {art.sha256[:12]})",
                fix=fix + ", or restore the file",
            )
        return path

    def require(self, name: str) -> tuple[Artifact, Path]:
        """A manifest artifact that must exist unchanged: (artifact, path), or a UsageError with the fix."""
        art = self.artifact(name)
        if art is None:
            raise UsageError(
                f"no {name} artifact in {self.manifest_path}",
                fix=f"run `{made_by(name)} {opt('out')} {self.root}` first",
            )
        return art, self.checked(art)

    def current(self, name: str) -> Artifact | None:
        """The artifact if its file is present and still matches the recorded sha256."""
        art = self.artifact(name)
        if art is None or not self.path(art.path).is_file():
            return None
        try:
            self.checked(art)
        except UsageError as e:
            log.warning("%s; it will not be reused", e.problem)
            return None
        return art

    # Pipeline steps: what each step was last run on (a key over its inputs) and the files it left.
    def step(self, name: str) -> dict[str, Any] | None:
        entry = self.manifest().get("steps", {}).get(name)
        return entry if isinstance(entry, dict) else None

    def step_staleness(self, name: str, key: str, inputs: dict[str, Any] | None = None) -> str | None:
        """None if step ``name`` last ran on the same inputs and every file it wrote is still there,
        unchanged; otherwise why it must run again (naming the inputs that changed, where both are known)."""
        entry = self.step(name)
        if not entry:
            return "not run in this directory yet"
        if entry.get("key") != key:
            before = entry.get("inputs")
            if isinstance(before, dict) and inputs is not None:
                changed = [
                    changed_input(k, before.get(k), inputs.get(k))
                    for k in {**before, **inputs}
                    if before.get(k) != inputs.get(k)
                ]
                if changed:
                    return "changed: " + "; ".join(changed)
            return "its inputs or settings changed"
        for rel, digest in entry.get("outputs", {}).items():
            path = self.path(rel)
            if not path.is_file():
                return f"{rel} is missing"
            if sha256_file(path) != digest:
                return f"{rel} changed since it was made"
        return None

    def record_step(self, name: str, key: str, outputs: list[Path], inputs: dict[str, Any] | None = None) -> None:
        data = self.manifest()
        data.setdefault("steps", {})[name] = {
            "key": key,
            "inputs": inputs,
            "outputs": {str(Path(p).relative_to(self.root)): sha256_file(Path(p)) for p in outputs},
            "finished": time.time(),
        }
        atomic_write_text(self.manifest_path, json.dumps(data, indent=2, sort_keys=True) + "\n")
