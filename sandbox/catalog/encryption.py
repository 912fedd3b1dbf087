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
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import os
import secrets
from pathlib import Path
from typing import Any

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


class DataKeyMissing(OSError):
    """The master key needed for a partition cannot be found or does not fit it: like a lost
    or damaged file, the service's problem (the engine reports it as data unavailable)."""


def is_encrypted_level(level: str) -> bool:
    return level in ENCRYPTED_LEVELS


def encryption_for(directory: Path) -> Any:
    """Fresh file encryption properties (new data keys) for one partition written in
    ``directory``, under the master key of the instance the directory belongs to."""
    key_file = _instance_root(directory) / MASTER_KEY_FILE
    if not key_file.exists():
        _create_master_key(key_file)
    config = pe.EncryptionConfiguration(
        footer_key=_MASTER_ID,
        uniform_encryption=True,
        double_wrapping=True,
        cache_lifetime=_KEY_CACHE,
    )
    return _factory(str(key_file)).file_encryption_properties(pe.KmsConnectionConfig(), config)


def decryption_for(path: str | Path) -> Any:
    """Decryption properties for the partition at ``path``, or None when it is not
    encrypted (then it is read as it always was)."""
    if not _is_encrypted(Path(path)):
        return None
    key_file = _find_master_key(Path(path))
    return _factory(str(key_file)).file_decryption_properties(
        pe.KmsConnectionConfig(), pe.DecryptionConfiguration(cache_lifetime=_KEY_CACHE)
    )


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
    key = secrets.token_bytes(_ALGORITHMS[algorithm])
    text = f"{algorithm}:{base64.b64encode(key).decode('ascii')}\n"
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another writer made it first: use that one
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)


@functools.lru_cache(maxsize=8)
def _factory(key_file: str) -> Any:
    algorithm, key = _read_master_key(Path(key_file))
    return pe.CryptoFactory(lambda _config: _MasterKeyClient(algorithm, key))


def _read_master_key(key_file: Path) -> tuple[str, bytes]:
    algorithm, _, encoded = key_file.read_text(encoding="ascii").strip().partition(":")
    try:
        key = base64.b64decode(encoded, validate=True)
    except ValueError:
        key = b""
    if _ALGORITHMS.get(algorithm) != len(key):
        raise DataKeyMissing(
            f"{key_file} is not a master key ('aes-256-gcm:' or 'sm4-gcm:' and the base64 "
            "key); restore it from backup"
        )
    return algorithm, key


class _MasterKeyClient(pe.KmsClient):  # type: ignore[misc]
    """Wraps key encryption keys with the master key: base64(nonce || ciphertext || tag),
    authenticated with the master key's identifier."""

    def __init__(self, algorithm: str, key: bytes) -> None:
        pe.KmsClient.__init__(self)
        self._algorithm = algorithm
        self._key = key

    def wrap_key(self, key_bytes: bytes, master_key_identifier: str) -> str:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        encryptor = Cipher(self._cipher(), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(master_key_identifier.encode("utf-8"))
        sealed = encryptor.update(key_bytes) + encryptor.finalize() + encryptor.tag
        return base64.b64encode(nonce + sealed).decode("ascii")

    def unwrap_key(self, wrapped_key: str, master_key_identifier: str) -> bytes:
        raw = base64.b64decode(wrapped_key)
        nonce, sealed, tag = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:-_TAG_BYTES], raw[-_TAG_BYTES:]
        decryptor = Cipher(self._cipher(), modes.GCM(nonce, tag)).decryptor()
        decryptor.authenticate_additional_data(master_key_identifier.encode("utf-8"))
        try:
            return decryptor.update(sealed) + decryptor.finalize()
        except InvalidTag:
            raise DataKeyMissing(
                "a partition's data key does not unwrap with this instance's master key: the "
                "file belongs to another instance or keys/data.key was replaced"
            ) from None

    def _cipher(self) -> algorithms.AES | algorithms.SM4:
        if self._algorithm == "sm4-gcm":
            return algorithms.SM4(self._key)
        return algorithms.AES(self._key)
