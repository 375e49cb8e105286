"""Every read and write in Refinery goes through this module, by fsspec URI.

Plain paths and ``file://`` use the local filesystem; ``s3://`` uses s3fs with the
job's storage options. Credentials come from the standard AWS chain (environment,
profile, instance role) and are never logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import tempfile
import uuid
from collections.abc import Iterator
from typing import IO, Any

import fsspec
import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict, Field


class StorageOptions(BaseModel):
    """How to reach an object store. Local paths ignore these."""

    model_config = ConfigDict(extra="forbid")

    endpoint_url: str | None = None
    """S3-compatible endpoint, e.g. ``http://127.0.0.1:9000`` for MinIO."""
    profile: str | None = None
    """Named AWS profile from ``~/.aws/config``."""
    anonymous: bool = False
    """Unsigned requests, for public buckets."""
    region: str | None = None

    def fsspec_kwargs(self, protocol: str) -> dict[str, Any]:
        if protocol not in ("s3", "s3a"):
            return {}
        # No listings cache: fsspec keeps one s3fs instance per set of options for the
        # whole process, and a cached listing would hide shards that landed since (a
        # refresh run from the same Python process saw the new key but could not stat it).
        kwargs: dict[str, Any] = {"anon": self.anonymous, "use_listings_cache": False}
        if self.profile:
            kwargs["profile"] = self.profile
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if self.region:
            kwargs["client_kwargs"] = {"region_name": self.region}
        return kwargs


def protocol_of(uri: str) -> str:
    if "://" in uri:
        return uri.split("://", 1)[0]
    return "file"


def normalize_uri(uri: str) -> str:
    """Local paths become absolute ``file``-less paths so Ray workers resolve them alike."""
    if protocol_of(uri) == "file":
        path = uri[len("file://") :] if uri.startswith("file://") else uri
        return os.path.abspath(os.path.expanduser(path))
    return uri.rstrip("/")


def filesystem(uri: str, options: StorageOptions | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    options = options or StorageOptions()
    uri = normalize_uri(uri)
    protocol = protocol_of(uri)
    fs, path = fsspec.core.url_to_fs(uri, **options.fsspec_kwargs(protocol))
    return fs, path


def pyarrow_filesystem(uri: str, options: StorageOptions | None = None) -> tuple[pafs.FileSystem, str]:
    """The same filesystem wrapped for pyarrow and Ray Data readers and writers."""
    fs, path = filesystem(uri, options)
    if protocol_of(normalize_uri(uri)) == "file":
        return pafs.LocalFileSystem(), path
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def join(uri: str, *parts: str) -> str:
    if protocol_of(uri) == "file":
        return os.path.join(normalize_uri(uri), *parts)
    return posixpath.join(uri.rstrip("/"), *parts)


def exists(uri: str, options: StorageOptions | None = None) -> bool:
    fs, path = filesystem(uri, options)
    return fs.exists(path)


def is_local(uri: str) -> bool:
    return protocol_of(normalize_uri(uri)) == "file"


def list_files(uri: str, options: StorageOptions | None = None, suffix: str = "") -> list[str]:
    """Files under a directory or prefix, or matching a glob, as sorted full URIs."""
    fs, path = filesystem(uri, options)
    protocol = protocol_of(normalize_uri(uri))
    if any(ch in path for ch in "*?["):
        found = fs.glob(path)
    elif fs.isfile(path):
        found = [path]
    elif fs.exists(path):
        found = fs.find(path)
    else:
        found = []
    found = [p for p in found if p.endswith(suffix) and not posixpath.basename(p).startswith((".", "_"))]
    return sorted(_with_protocol(protocol, p) for p in found)


def list_dirs(uri: str, options: StorageOptions | None = None) -> list[str]:
    """Names of the directories (prefixes) directly under ``uri``, sorted; none if it is absent."""
    fs, path = filesystem(uri, options)
    fs.invalidate_cache(path)
    if not fs.exists(path):
        return []
    return sorted(
        posixpath.basename(entry["name"].rstrip("/"))
        for entry in fs.ls(path, detail=True)
        if entry["type"] == "directory"
    )


def _with_protocol(protocol: str, path: str) -> str:
    return path if protocol == "file" else f"{protocol}://{path}"


def read_bytes(uri: str, options: StorageOptions | None = None) -> bytes:
    fs, path = filesystem(uri, options)
    with fs.open(path, "rb") as f:
        return f.read()


def read_json(uri: str, options: StorageOptions | None = None) -> Any:
    return json.loads(read_bytes(uri, options))


def open_read(uri: str, options: StorageOptions | None = None, random_access: bool = False) -> IO[bytes]:
    """``random_access``: for reading a few parts of a file (some row groups of a Parquet
    file); object stores then fetch only the bytes asked for, where their default read-ahead
    would fetch tens of megabytes per seek."""
    fs, path = filesystem(uri, options)
    return fs.open(path, "rb", cache_type="none") if random_access else fs.open(path, "rb")


def file_info(uri: str, options: StorageOptions | None = None) -> dict[str, Any]:
    """Size plus whatever change token the store offers (mtime locally, ETag on S3)."""
    fs, path = filesystem(uri, options)
    info = fs.info(path)
    token = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified")
    return {"size": int(info.get("size") or 0), "version": str(token) if token is not None else None}


@contextlib.contextmanager
def local_path(uri: str, options: StorageOptions | None = None) -> Iterator[str]:
    """A local file path with the contents of ``uri``, for libraries that only open paths
    (fasttext, kenlm). Remote files are copied to a temporary file, removed on exit; a
    library that loads or maps the file keeps working after that."""
    if is_local(uri):
        yield filesystem(uri, options)[1]
        return
    suffix = posixpath.splitext(uri)[1]
    with tempfile.NamedTemporaryFile(suffix=suffix) as copy:
        fs, path = filesystem(uri, options)
        fs.get_file(path, copy.name)
        yield copy.name


# The temporary sibling a local atomic_writer writes before it renames it into place.
PARTIAL_WRITE = re.compile(r".+\.tmp-[0-9a-f]{32}")


@contextlib.contextmanager
def atomic_writer(uri: str, options: StorageOptions | None = None, part_size: int | None = None) -> Iterator[IO[bytes]]:
    """Write a file so that readers see either nothing or the complete file.

    Locally the bytes go to a temporary sibling that is renamed into place. Object
    stores publish an object only when its upload completes, so a killed writer
    leaves nothing behind there either.
    """
    fs, path = filesystem(uri, options)
    if is_local(uri):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"  # the form PARTIAL_WRITE matches
        try:
            with open(tmp, "wb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    else:
        # Streams as a multipart upload (parts of ``part_size``); on error, completing the
        # upload included, it is aborted (discard), so no partial object appears and no
        # uploaded parts are left behind to be billed.
        f = fs.open(path, "wb", **({"block_size": part_size} if part_size else {}))
        try:
            yield f
            f.close()
        except BaseException:
            if hasattr(f, "discard"):
                f.discard()
                f.closed = True  # or the file's finalizer would try to complete the upload
            raise


def write_bytes(uri: str, data: bytes, options: StorageOptions | None = None) -> None:
    with atomic_writer(uri, options) as f:
        f.write(data)


class UploadConfig(BaseModel):
    """How output files are uploaded to an object store."""

    model_config = ConfigDict(extra="forbid")

    part_size_mb: int = Field(64, ge=5, le=5120)
    """Multipart upload part size (S3 allows 5 MiB to 5 GiB per part, 10,000 parts)."""
    attempts: int = Field(5, ge=1)
    """Tries per file before the job fails; each retry uploads the whole file again."""
    backoff_s: float = Field(1.0, ge=0)
    """Wait before the first retry; doubled for each further one."""


def write_bytes_retrying(
    uri: str, data: bytes, options: StorageOptions | None, upload: UploadConfig, sleep: Any = None
) -> None:
    """Write a file whole (never partially visible), retrying transient failures with
    exponential backoff. Errors that retrying cannot fix (permissions, a missing bucket)
    fail at once."""
    import time

    sleep = sleep or time.sleep
    for attempt in range(1, upload.attempts + 1):
        try:
            with atomic_writer(uri, options, part_size=upload.part_size_mb << 20) as f:
                f.write(data)
            return
        except (PermissionError, FileNotFoundError, IsADirectoryError):
            raise
        except Exception as exc:
            if attempt == upload.attempts:
                raise OSError(
                    f"upload of {uri} failed {attempt} times; last error: {type(exc).__name__}: {exc}"
                ) from exc
            sleep(upload.backoff_s * 2 ** (attempt - 1))


def write_json(uri: str, obj: Any, options: StorageOptions | None = None) -> None:
    write_bytes(uri, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode(), options)


def remove_tree(uri: str, options: StorageOptions | None = None) -> None:
    fs, path = filesystem(uri, options)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def move(source: str, target: str, options: StorageOptions | None = None) -> None:
    """Move a file: a rename on local disk; on S3, which has no rename, a server-side copy
    (no data through this machine) and then the delete of the source."""
    fs, source_path = filesystem(source, options)
    _, target_path = filesystem(target, options)
    if is_local(source):
        os.makedirs(os.path.dirname(target_path), exist_ok=True)
        os.replace(source_path, target_path)
    else:
        fs.copy(source_path, target_path)
        fs.rm(source_path)


def remove_partial_writes(uri: str, options: StorageOptions | None = None) -> list[str]:
    """Remove the temporary files that local writers killed mid-file left under ``uri``, and
    return their paths. A writer that dies by SIGKILL (a killed job, a lost Ray worker whose
    task Ray then runs again) never reaches atomic_writer's cleanup; its temporary would stay
    beside the finished files, where a reader of the directory (pyarrow datasets, pandas)
    takes it for one more Parquet file of a sink. Call only when nothing writes under
    ``uri``. Object stores need nothing: an unfinished upload is never published."""
    if not is_local(uri):
        return []
    removed = []
    for directory, _, names in os.walk(filesystem(uri, options)[1]):
        for name in names:
            if PARTIAL_WRITE.fullmatch(name):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(directory, name))
                    removed.append(os.path.join(directory, name))
    return sorted(removed)


def sha256_of(uri: str, options: StorageOptions | None = None) -> str:
    digest = hashlib.sha256()
    with open_read(uri, options) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_writable(uri: str, options: StorageOptions | None = None) -> None:
    """Fail before any work starts if the output location cannot take a file."""
    probe = join(uri, f"_write_probe_{uuid.uuid4().hex}")
    try:
        write_bytes(probe, b"ok", options)
        fs, path = filesystem(probe, options)
        fs.rm(path)
    except Exception as exc:  # any backend error means the same thing to the user
        raise OutputNotWritable(
            f"cannot write to output '{uri}': {type(exc).__name__}: {exc}. "
            "Check that the path is a directory you can write to (or that the bucket exists "
            "and your credentials allow PutObject), or set output.uri to another location."
        ) from exc


class OutputNotWritable(RuntimeError):
    pass
