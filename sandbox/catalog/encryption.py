"""Encryption at rest of L3 and L4 partitions: Parquet modular encryption, with data keys
wrapped by a master key the service holds.

Every partition file of an L3 or L4 dataset is written encrypted (pyarrow's CryptoFactory,
double wrapping): a fresh data key per file encrypts its pages and its footer, so a file
copied off the disk shows neither values nor schema; that data key is wrapped by a key
encryption key, which the instance's master key wraps. Pages and footers are AES-GCM, the
only ciphers the Parquet format defines; the master key wraps with AES-256-GCM, or SM4-GCM on
an instance of the ``sm`` crypto suite.

The master key is ``keys/data.key`` beside the bureau key (``<algorithm>:<base64 key>``, mode
600), made with the first encrypted file. Readers find it from the file they read: an
encrypted file (its last four bytes are ``PARE`` instead of ``PAR1``) is opened with the key
of the nearest directory above it that holds ``keys/data.key``, so a Ray worker that reads a
partition needs nothing but the path, as for a plain one. A file written before encryption was
on stays readable as it is.

Each file's key material (its data keys, wrapped) lies beside it, in
``_KEY_MATERIAL_FOR_<file>.json`` (Parquet's external key material), so that rotating the
master key (`rotate`) re-wraps the key encryption keys there without rewriting the data. The
master key file holds numbered versions; new keys are wrapped with the newest, and a wrapped
key says which version wrapped it. Rotation adds a version, re-wraps every file's key material
and then retires the older versions: a copy of the old master key opens nothing afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import functools
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet.encryption as pe
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from operators.keys import private_key_from_pem, suite_of
from operators.suite import Suite

ENCRYPTED_LEVELS = frozenset({"L3", "L4"})
MASTER_KEY_FILE = Path("keys") / "data.key"
_BUREAU_KEY_FILE = Path("keys") / "bureau.pem"
_ENCRYPTED_MAGIC = b"PARE"
_MASTER_ID = "sandbox-master"
_NONCE_BYTES = 12
_TAG_BYTES = 16
# Keys wrapped once are reused for this long within a process, so reading a dataset's
# partitions unwraps each key encryption key once, not once per file.
_KEY_CACHE = dt.timedelta(hours=1)
_ALGORITHMS = {"aes-256-gcm": 32, "sm4-gcm": 16}
_LOCAL = pafs.LocalFileSystem()
_KEY_MATERIAL_PREFIX = "_KEY_MATERIAL_FOR_"
# The master key's versions: {number: (algorithm, key)}.
Versions = dict[int, tuple[str, bytes]]


class DataKeyMissing(OSError):
    """The master key needed for a partition cannot be found or does not fit it: like a lost
    or damaged file, the service's problem (the engine reports it as data unavailable)."""


def is_encrypted_level(level: str) -> bool:
    return level in ENCRYPTED_LEVELS


def key_material(path: Path) -> Path:
    """Where the key material of the partition at ``path`` lies (beside it)."""
    return path.parent / f"{_KEY_MATERIAL_PREFIX}{path.name}.json"


def encryption_for(path: Path) -> Any:
    """Fresh file encryption properties (new data keys) for the partition about to be
    written at ``path``, under the master key of the instance it belongs to; its key material
    is written beside it."""
    key_file = _instance_root(path.parent) / MASTER_KEY_FILE
    if not key_file.exists():
        _create_master_key(key_file)
    config = pe.EncryptionConfiguration(
        footer_key=_MASTER_ID,
        uniform_encryption=True,
        double_wrapping=True,
        cache_lifetime=_KEY_CACHE,
        internal_key_material=False,
    )
    return _factory(str(key_file)).file_encryption_properties(
        pe.KmsConnectionConfig(), config, str(path), _LOCAL
    )


def decryption_for(path: str | Path) -> Any:
    """Decryption properties for the partition at ``path``, or None when it is not
    encrypted (then it is read as it always was)."""
    if not _is_encrypted(Path(path)):
        return None
    key_file = _find_master_key(Path(path))
    return _factory(str(key_file)).file_decryption_properties(
        pe.KmsConnectionConfig(),
        pe.DecryptionConfiguration(cache_lifetime=_KEY_CACHE),
        str(path),
        _LOCAL,
    )


@dataclass(frozen=True)
class Rotation:
    version: int  # the master key's version now in force
    files: int  # partitions whose key material was re-wrapped
    retired: tuple[int, ...]  # versions removed from the master key file


def rotate(data_dir: Path, partitions: Iterable[Path]) -> Rotation:
    """A new version of the instance's master key, every encrypted partition's key material
    re-wrapped with it (the data files are not touched), then the older versions retired.
    Run while the service is stopped: a running process may hold keys wrapped with an older
    version in its cache for up to an hour, and write new files with them."""
    key_file = data_dir / MASTER_KEY_FILE
    if not key_file.exists():
        raise DataKeyMissing(
            f"{key_file} does not exist: this instance has written no encrypted data yet, so "
            "there is no master key to rotate"
        )
    with _locked(key_file):
        versions = _read_versions(key_file)
        newest = max(versions)
        algorithm = versions[newest][0]
        version = newest + 1
        fresh = {version: (algorithm, secrets.token_bytes(_ALGORITHMS[algorithm]))}
        _write_versions(key_file, {**versions, **fresh})
        factory = _factory(str(key_file))
        factory.remove_cache_entries_for_all_tokens()
        files = 0
        for path in partitions:
            if not _is_encrypted(path):
                continue
            if not key_material(path).exists():
                raise DataKeyMissing(
                    f"{path} is encrypted but its key material ({key_material(path).name}) is "
                    "not beside it; restore it from backup before rotating, or the file would "
                    "stay under a retired key"
                )
            factory.rotate_master_keys(
                pe.KmsConnectionConfig(), str(path), _LOCAL, True, _KEY_CACHE.total_seconds()
            )
            files += 1
        _write_versions(key_file, fresh)
        factory.remove_cache_entries_for_all_tokens()
    return Rotation(version, files, tuple(sorted(v for v in versions if v != version)))


@contextlib.contextmanager
def _locked(key_file: Path) -> Iterator[None]:
    with open(key_file.with_name(key_file.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _is_encrypted(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < len(_ENCRYPTED_MAGIC):
            return False
        f.seek(-len(_ENCRYPTED_MAGIC), os.SEEK_END)
        return f.read() == _ENCRYPTED_MAGIC


def _instance_root(directory: Path) -> Path:
    for candidate in (directory, *directory.parents):
        if (candidate / _BUREAU_KEY_FILE).is_file():
            return candidate
    raise DataKeyMissing(
        f"{directory} is not inside an instance's data directory (no {_BUREAU_KEY_FILE} "
        "above it), so there is no master key to encrypt its L3/L4 data with; write datasets "
        "under the data directory made by 'sandbox init'"
    )


def _find_master_key(path: Path) -> Path:
    for candidate in path.parents:
        if (candidate / MASTER_KEY_FILE).is_file():
            return candidate / MASTER_KEY_FILE
    raise DataKeyMissing(
        f"{path} is encrypted but no {MASTER_KEY_FILE} was found in the directories above "
        "it; restore the instance's keys directory (with its data.key) from backup"
    )


def _create_master_key(key_file: Path) -> None:
    suite = suite_of(private_key_from_pem((key_file.parent / "bureau.pem").read_bytes()))
    algorithm = "sm4-gcm" if suite is Suite.sm else "aes-256-gcm"
    text = _versions_text({1: (algorithm, secrets.token_bytes(_ALGORITHMS[algorithm]))})
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another writer made it first: use that one
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)


def _versions_text(versions: Versions) -> str:
    return "".join(
        f"v{n} {algorithm}:{base64.b64encode(key).decode('ascii')}\n"
        for n, (algorithm, key) in sorted(versions.items())
    )


def _write_versions(key_file: Path, versions: Versions) -> None:
    """Replace the master key file in one step (a reader sees the old or the new, whole)."""
    tmp = key_file.with_name(key_file.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(_versions_text(versions))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, key_file)


@functools.lru_cache(maxsize=8)
def _factory(key_file: str) -> Any:
    keys = _MasterKeys(Path(key_file))
    keys.current()  # a file that is not a master key is refused here, not at the first read
    return pe.CryptoFactory(lambda _config: _MasterKeyClient(keys))


def _read_versions(key_file: Path) -> Versions:
    """Each line `v<n> <algorithm>:<base64 key>` (a line without `v<n> ` is version 1)."""
    versions: Versions = {}
    for line in key_file.read_text(encoding="ascii").splitlines():
        label, _, spec = line.strip().rpartition(" ")
        algorithm, _, encoded = spec.partition(":")
        try:
            number = int(label[1:]) if label else 1
            key = base64.b64decode(encoded, validate=True)
        except ValueError:
            number, key = 0, b""
        if (
            number < 1
            or (label and not label.startswith("v"))
            or (_ALGORITHMS.get(algorithm) != len(key))
        ):
            raise DataKeyMissing(
                f"{key_file} is not a master key (lines 'v<n> aes-256-gcm:' or "
                "'v<n> sm4-gcm:' and the base64 key); restore it from backup"
            )
        versions[number] = (algorithm, key)
    if not versions:
        raise DataKeyMissing(f"{key_file} holds no master key; restore it from backup")
    return versions


class _MasterKeys:
    """The master key file's versions, read again whenever the file changes (a rotation in
    another process)."""

    def __init__(self, key_file: Path) -> None:
        self._file = key_file
        self._seen: tuple[int, int] | None = None
        self._versions: Versions = {}

    def _load(self) -> Versions:
        stat = self._file.stat()
        seen = (stat.st_mtime_ns, stat.st_ino)
        if seen != self._seen:
            self._versions, self._seen = _read_versions(self._file), seen
        return self._versions

    def current(self) -> tuple[int, str, bytes]:
        versions = self._load()
        number = max(versions)
        return (number, *versions[number])

    def version(self, number: int) -> tuple[str, bytes] | None:
        return self._load().get(number)


class _MasterKeyClient(pe.KmsClient):  # type: ignore[misc]
    """Wraps key encryption keys with the newest master key: `v<n>:` and base64(nonce ||
    ciphertext || tag), authenticated with the master key's identifier; unwraps with the
    version named."""

    def __init__(self, keys: _MasterKeys) -> None:
        pe.KmsClient.__init__(self)
        self._keys = keys

    def wrap_key(self, key_bytes: bytes, master_key_identifier: str) -> str:
        number, algorithm, key = self._keys.current()
        nonce = secrets.token_bytes(_NONCE_BYTES)
        encryptor = Cipher(_cipher(algorithm, key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(master_key_identifier.encode("utf-8"))
        sealed = encryptor.update(key_bytes) + encryptor.finalize() + encryptor.tag
        return f"v{number}:" + base64.b64encode(nonce + sealed).decode("ascii")

    def unwrap_key(self, wrapped_key: str, master_key_identifier: str) -> bytes:
        label, _, encoded = wrapped_key.rpartition(":")
        found = self._keys.version(int(label[1:])) if label[1:].isdigit() else None
        if found is None:
            raise DataKeyMissing(
                "a partition's data key was wrapped with a master key this instance does not "
                "hold (another instance's, or a version retired by a rotation the file missed)"
            )
        raw = base64.b64decode(encoded)
        nonce, sealed, tag = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:-_TAG_BYTES], raw[-_TAG_BYTES:]
        decryptor = Cipher(_cipher(*found), modes.GCM(nonce, tag)).decryptor()
        decryptor.authenticate_additional_data(master_key_identifier.encode("utf-8"))
        try:
            return decryptor.update(sealed) + decryptor.finalize()
        except InvalidTag:
            raise DataKeyMissing(
                "a partition's data key does not unwrap with this instance's master key: the "
                "file belongs to another instance or keys/data.key was replaced"
            ) from None


def _cipher(algorithm: str, key: bytes) -> algorithms.AES | algorithms.SM4:
    if algorithm == "sm4-gcm":
        return algorithms.SM4(key)
    return algorithms.AES(key)
