"""Where Ray Tune and Ray Train keep their runs: a local (or shared) folder, or a URI.

A URI (`s3://bucket/prefix`, `gs://...`, anything pyarrow's filesystems open) goes to Ray
as it is: Ray writes trials, checkpoints and experiment state there itself. The project's
own files of a tuning experiment (its request, the Optuna study, the leaderboard and the
best configuration) are written in a local copy of the experiment's folder and uploaded
beside Ray's; a resume downloads them first, so any machine with the credentials finishes
the search. Credentials and endpoints come from the usual places (AWS_* variables, an
instance role; AWS_ENDPOINT_URL for an S3-compatible server), as for the AWS CLI.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path

from colorize.errors import ColorizeError


def is_uri(storage: str | Path) -> bool:
    """A remote storage URI (scheme://...), as opposed to a folder on this machine."""
    return bool(re.match(r"^[a-z][a-z0-9+.-]*://", str(storage))) and not str(storage).startswith("file://")


def resolve(storage: str | Path, option: str = "--storage") -> str:
    """A local folder as an absolute path, or a URI checked to open (bucket reachable)."""
    if not is_uri(storage):
        return str(Path(storage).expanduser().resolve())
    uri = str(storage).rstrip("/")
    fs, path = _open(uri, option)
    bucket = path.split("/", 1)[0]
    try:
        found = fs.get_file_info(bucket)
    except OSError as exc:
        raise ColorizeError(f"{option} {uri}: cannot reach the storage ({_first_line(exc)}); "
                            "check the credentials (AWS_* variables or a role) and the endpoint") from None
    if found.type.name == "NotFound":
        raise ColorizeError(f"{option} {uri}: the bucket {bucket!r} does not exist (create it first)")
    return uri


def join(base: str | Path, *parts: str) -> str:
    """`base`/parts for a URI or a local path alike."""
    return "/".join([str(base).rstrip("/"), *parts]) if is_uri(base) else str(Path(base, *parts))


def exists(uri: str | Path) -> bool:
    """Whether a file or folder is at `uri` (a URI or a local path)."""
    if not is_uri(uri):
        return Path(uri).exists()
    fs, path = _open(str(uri))
    return fs.get_file_info(path).type.name != "NotFound"


def local_copy(uri: str) -> Path:
    """This machine's working folder for the remote folder `uri` (the same one every time)."""
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "-", uri.split("://", 1)[1]).strip("-")[-60:]
    digest = hashlib.sha256(uri.encode()).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / "colorize-storage" / f"{tag}-{digest}"


def download(uri: str, folder: Path, names: list[str]) -> list[str]:
    """Copy the files `names` of the remote folder `uri` that exist into `folder`; their names."""
    import pyarrow.fs as pafs

    fs, path = _open(uri)
    folder.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in names:
        if fs.get_file_info(f"{path}/{name}").type.name == "NotFound":
            continue
        pafs.copy_files(f"{path}/{name}", str(folder / name), source_filesystem=fs,
                        destination_filesystem=pafs.LocalFileSystem())
        copied.append(name)
    return copied


def upload(folder: Path, uri: str, names: list[str]) -> None:
    """Copy the files `names` of the local `folder` that exist to the remote folder `uri`."""
    import pyarrow.fs as pafs

    fs, path = _open(uri)
    for name in names:
        if (folder / name).is_file():
            pafs.copy_files(str(folder / name), f"{path}/{name}", source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=fs)


def _open(uri: str, option: str = "--storage"):
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise ColorizeError(f"{option} {uri}: not a storage URI pyarrow can open ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
