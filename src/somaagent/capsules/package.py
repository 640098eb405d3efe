"""A capsule package: its manifest and files, read from a folder or an uploaded archive
(``.tar.gz`` or ``.zip``), with the content hash that pins them.

Archives are read member by member with limits on count and size, and every path must stay
inside the package (no absolute paths, no ``..``, no links), so an upload cannot write or read
anything outside it.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import ValidationError as PydanticValidationError

from somaagent.capsules.manifest import MANIFEST_FILES, Manifest, canonical_json
from somaagent.errors import PayloadTooLargeError, ValidationError

__all__ = [
    "MAX_FILES",
    "MAX_TOTAL_BYTES",
    "Package",
    "content_sha256",
    "from_archive",
    "from_folder",
    "parse_manifest",
]

MAX_FILES = 200
MAX_TOTAL_BYTES = 5 * 1024 * 1024
_SKIP_DIRS = {"__pycache__", ".git", ".venv", "node_modules", ".pytest_cache"}


@dataclass(frozen=True, slots=True)
class Package:
    """A validated capsule: the manifest (every hash filled in) and its files."""

    manifest: Manifest
    files: dict[str, bytes]
    """Relative POSIX path -> content, without the manifest file itself."""

    @property
    def content_sha256(self) -> str:
        assert self.manifest.sha256 is not None
        return self.manifest.sha256

    def to_archive(self) -> bytes:
        """The files as a deterministic ``.tar.gz`` (how a version is stored)."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as archive:
            for path in sorted(self.files):
                info = tarfile.TarInfo(path)
                info.size = len(self.files[path])
                info.mode = 0o644
                archive.addfile(info, io.BytesIO(self.files[path]))
        return buffer.getvalue()


def content_sha256(manifest: Manifest, files: dict[str, bytes]) -> str:
    """The content hash: every file's sha256 and the manifest without its own hashes."""
    bare = manifest.model_copy(
        update={
            "sha256": None,
            "tools": [t.model_copy(update={"sha256": None}) for t in manifest.tools],
        }
    )
    listing = {path: hashlib.sha256(data).hexdigest() for path, data in sorted(files.items())}
    dumped = bare.model_dump(mode="json")
    if dumped["permissions"].get("egress_mb") is None:
        # added after hashes were first published: unset, it leaves every hash as it was
        dumped["permissions"].pop("egress_mb", None)
    document = {"manifest": dumped, "files": listing}
    return hashlib.sha256(canonical_json(document)).hexdigest()


def _validation_error(exc: PydanticValidationError) -> ValidationError:
    errors = [
        {"loc": ["manifest", *err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors()
    ]
    fields = ", ".join(".".join(str(part) for part in e["loc"]) for e in errors)
    return ValidationError(f"invalid capsule manifest: {fields}", errors=errors)


def parse_manifest(raw: bytes, filename: str) -> Manifest:
    """Parse and validate manifest text (YAML or JSON); a 422 naming the fields."""
    try:
        data: Any = json.loads(raw) if filename.endswith(".json") else yaml.safe_load(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise ValidationError(
            f"{filename} is not valid {'JSON' if filename.endswith('.json') else 'YAML'}: {exc}",
            errors=[{"loc": ["manifest"], "msg": str(exc)[:300], "type": "value_error"}],
        ) from exc
    if not isinstance(data, dict):
        raise ValidationError(
            f"{filename} must hold a mapping",
            errors=[{"loc": ["manifest"], "msg": "not a mapping", "type": "type_error"}],
        )
    try:
        return Manifest.model_validate(data)
    except PydanticValidationError as exc:
        raise _validation_error(exc) from exc


def _safe_path(name: str) -> str:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValidationError(
            f"archive member {name!r} leaves the package",
            errors=[{"loc": ["archive", name], "msg": "unsafe path", "type": "value_error"}],
        )
    return str(path)


def _build(files: dict[str, bytes]) -> Package:
    manifest_name = next((n for n in MANIFEST_FILES if n in files), None)
    if manifest_name is None:
        raise ValidationError(
            "no capsule.yaml in the package",
            errors=[{"loc": ["manifest"], "msg": "missing capsule.yaml", "type": "missing"}],
        )
    manifest = parse_manifest(files.pop(manifest_name), manifest_name)
    for name in MANIFEST_FILES:
        files.pop(name, None)
    if manifest.kind == "python" and manifest.entry not in files:
        raise ValidationError(
            f"entry {manifest.entry!r} is not in the package",
            errors=[{"loc": ["manifest", "entry"], "msg": "file not found", "type": "value_error"}],
        )
    digest = content_sha256(manifest, files)
    if manifest.sha256 is not None and manifest.sha256 != digest:
        raise ValidationError(
            f"content sha256 mismatch: the manifest pins {manifest.sha256}, the files hash to "
            f"{digest}",
            errors=[
                {"loc": ["manifest", "sha256"], "msg": "does not match", "type": "value_error"}
            ],
        )
    return Package(manifest=manifest.pinned(digest), files=files)


def _add(files: dict[str, bytes], name: str, data: bytes, total: list[int]) -> None:
    total[0] += len(data)
    if len(files) >= MAX_FILES or total[0] > MAX_TOTAL_BYTES:
        raise PayloadTooLargeError(
            f"a capsule holds at most {MAX_FILES} files and {MAX_TOTAL_BYTES // 1024 // 1024} MiB"
        )
    files[_safe_path(name)] = data


def from_folder(folder: Path) -> Package:
    """Read a capsule from a folder (caches and VCS folders are skipped)."""
    files: dict[str, bytes] = {}
    total = [0]
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part in _SKIP_DIRS for part in rel.parts) or path.suffix == ".pyc":
            continue
        if path.is_symlink():
            raise ValidationError(
                f"{rel} is a link; a capsule holds plain files only",
                errors=[{"loc": ["archive", str(rel)], "msg": "link", "type": "value_error"}],
            )
        if path.is_file():
            _add(files, rel.as_posix(), path.read_bytes(), total)
    return _build(files)


def _strip_common_root(files: dict[str, bytes]) -> dict[str, bytes]:
    # An archive of a folder usually holds "mytool/capsule.yaml": drop that one leading folder.
    if any(name in files for name in MANIFEST_FILES):
        return files
    roots = {name.split("/", 1)[0] for name in files}
    if len(roots) == 1 and all("/" in name for name in files):
        return {name.split("/", 1)[1]: data for name, data in files.items()}
    return files


def from_archive(data: bytes) -> Package:
    """Read a capsule from a ``.tar.gz``/``.tar`` or ``.zip`` archive's bytes."""
    files: dict[str, bytes] = {}
    total = [0]
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                if info.file_size > MAX_TOTAL_BYTES:
                    raise PayloadTooLargeError(f"{info.filename} is too large")
                _add(files, info.filename, archive.read(info), total)
        return _build(_strip_common_root(files))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for member in tar:
                if member.isdir():
                    continue
                if not member.isfile():
                    raise ValidationError(
                        f"archive member {member.name!r} is not a plain file",
                        errors=[
                            {
                                "loc": ["archive", member.name],
                                "msg": "not a file",
                                "type": "value_error",
                            }
                        ],
                    )
                if member.size > MAX_TOTAL_BYTES:
                    raise PayloadTooLargeError(f"{member.name} is too large")
                handle = tar.extractfile(member)
                assert handle is not None
                _add(files, member.name, handle.read(), total)
    except tarfile.TarError as exc:
        raise ValidationError(
            "the upload is neither a .tar.gz nor a .zip archive",
            errors=[{"loc": ["archive"], "msg": str(exc), "type": "value_error"}],
        ) from exc
    return _build(_strip_common_root(files))
