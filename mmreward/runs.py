"""Run folders that know what made them.

Every command that writes a folder of work it can resume (``eval run``, ``data distill``, ``data reject``,
``data synth``) records in ``provenance.json`` what made it: the command, the model (its path and a content hash),
the settings that change what the work produces, and a hash of every input record it has seen. A re-run into the
same folder resumes only when all of that matches; otherwise it is refused with what differs, before anything is
written, and ``--force`` starts over (the command's old outputs are deleted first). So another model's
predictions are never presented as this model's, two suites never share one predictions file, and a prediction
is never scored against an item that has changed since.

Settings that only say how much or how fast (``--limit``, batch sizes, concurrency) are not part of the identity:
a larger ``--limit`` resumes and extends the work.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mmreward.errors import InputError

PROVENANCE = "provenance.json"
# Files above this are hashed from their size and three 4 MiB windows (start, middle, end) rather than in full: a
# 15 GB checkpoint would take a minute to hash, and fine-tuned weights differ in every window.
FULL_HASH_BYTES = 64 * 1024 * 1024
WINDOW = 4 * 1024 * 1024


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's content (sampled windows past :data:`FULL_HASH_BYTES`)."""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        if size <= FULL_HASH_BYTES:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:
            for offset in (0, size // 2 - WINDOW // 2, size - WINDOW):
                f.seek(offset)
                h.update(f.read(WINDOW))
    return h.hexdigest()


def model_fingerprint(path: str | os.PathLike) -> dict[str, str]:
    """A checkpoint folder's path and a hash over its top-level files' names and contents (weights, config,
    tokenizer, template, recorded settings; training checkpoints in subfolders are not part of the model)."""
    root = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")):
        if f.name in ("trainer_state.json", "training_args.bin", "train_log.jsonl", "metrics.json"):
            continue  # how the run went, not what the model is
        h.update(f.name.encode() + b"\0" + file_digest(f).encode() + b"\n")
    return {"path": str(root.resolve()), "sha256": h.hexdigest()}


def record_digest(record: Any) -> str:
    """A record's content hash (its dict form, key order ignored)."""
    d = record.to_dict() if hasattr(record, "to_dict") else record
    return hashlib.sha256(json.dumps(d, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()[:16]


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename it over: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: shards may write the same file
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _differences(old: Any, new: Any, where: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(k), new.get(k), f"{where}.{k}" if where else str(k))
        return out
    if old != new:
        return [f"{where}: {json.dumps(new, default=str)} now, {json.dumps(old, default=str)} in the folder"]
    return []


class RunFolder:
    """The folder one resumable command writes.

    ``identity``: what must match for a re-run to resume (compared key by key); ``info``: recorded but not compared
    (a model's path: the same weights moved elsewhere still resume). ``outputs``: the file and folder names (glob
    patterns) the command writes there, deleted by ``force``. Call :meth:`open` before writing anything."""

    def __init__(
        self,
        path: str | os.PathLike,
        command: str,
        identity: dict[str, Any],
        outputs: Iterable[str],
        info: dict[str, Any] | None = None,
        flag: str = "--out",
    ) -> None:
        self.path = Path(path)
        self.command = command
        self.identity = json.loads(json.dumps(identity, default=str))  # as it will read back
        self.outputs = list(outputs)
        self.info = info or {}
        self.flag = flag
        self.records: dict[str, str] = {}

    @property
    def manifest_path(self) -> Path:
        return self.path / PROVENANCE

    def read(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except json.JSONDecodeError:
            raise InputError(
                f"{self.manifest_path}: unreadable (not JSON); use --force to start over, or another {self.flag}"
            ) from None

    def existing_outputs(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        found = {p for pattern in self.outputs for p in self.path.glob(pattern)}
        return sorted(found)

    def open(
        self, records: dict[str, str] | None = None, force: bool = False, write: bool = True
    ) -> dict[str, Any] | None:
        """Check the folder against this run (refusing with what differs), or with ``force`` clear the old work;
        then record this run. ``records``: id -> :func:`record_digest` of the inputs. Returns the previous
        manifest, or None for a fresh folder. ``write=False`` only checks (another process writes)."""
        records = records or {}
        old = self.read()
        problems: list[str] = []
        if old is None:
            leftovers = self.existing_outputs()
            if leftovers:
                names = ", ".join(p.name for p in leftovers[:5])
                problems.append(f"it holds {names} from a run that recorded no provenance (an older version?)")
        else:
            if old.get("command") != self.command:
                problems.append(f"it holds the work of `mmreward {old.get('command')}`, not `mmreward {self.command}`")
            else:
                problems += _differences(old.get("identity", {}), self.identity)
            seen = old.get("records", {})
            changed = sorted(rid for rid, h in records.items() if rid in seen and seen[rid] != h)
            if changed:
                shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
                problems.append(f"{len(changed)} input record(s) changed since that work was done: {shown}")
        if problems and not force:
            raise InputError(
                f"{self.flag} {self.path} holds other work than this run would make:\n  - "
                + "\n  - ".join(problems)
                + f"\nUse another {self.flag}, or add --force to delete that work and start over."
            )
        if force and (problems or old is not None):
            self.clear()
            old = None
        self.records = dict((old or {}).get("records", {}))
        self.records.update(records)
        if write:
            self.save()
        return old

    def clear(self) -> None:
        for p in self.existing_outputs() + ([self.manifest_path] if self.manifest_path.exists() else []):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()

    def save(self, **extra: Any) -> None:
        manifest = {
            "command": self.command,
            "identity": self.identity,
            "info": self.info,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **extra,
            "records": self.records,
        }
        atomic_write_text(self.manifest_path, json.dumps(manifest, indent=1, default=str))


def refuse_overwrite(output: str | os.PathLike, inputs: Iterable[str | os.PathLike], flag: str = "--output") -> None:
    """Refuse to write ``output`` onto one of ``inputs`` (the same file, through any path or link)."""
    out = Path(output).resolve()
    for i in inputs:
        src = Path(i).resolve()
        if out == src:
            raise InputError(
                f"{flag} {output}: that is the input ({i}); writing it would replace the data it is made from. "
                f"Give {flag} another path"
            )


def generator_identity(generator: Any, model_path: str | os.PathLike | None = None) -> tuple[dict, dict]:
    """(identity, info) of whoever generates a run's trajectories: a checkpoint's content hash (from
    ``model_path`` or the loaded model's own path) and its sampling settings, or a remote/rule-based generator's
    name and settings."""
    from dataclasses import asdict, is_dataclass  # noqa: PLC0415

    sampling = getattr(generator, "sampling", None)
    sampling = asdict(sampling) if is_dataclass(sampling) else None
    if model_path is None:
        config = getattr(getattr(generator, "model", None), "config", None)
        guess = getattr(config, "_name_or_path", None)
        model_path = guess if guess and Path(guess).is_dir() else None
    if model_path is not None:
        fp = model_fingerprint(model_path)
        return {"model": fp["sha256"], "sampling": sampling}, {"model_path": fp["path"]}
    settings = getattr(generator, "settings", None)
    described = settings.sampling() if hasattr(settings, "sampling") else None
    name = getattr(generator, "name", type(generator).__name__)
    extra = {k: getattr(generator, k) for k in ("crop_policy", "seed") if hasattr(generator, k)}
    return {"model": name, "sampling": sampling or described, **extra}, {}
