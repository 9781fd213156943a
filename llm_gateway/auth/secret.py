"""Gateway keys as strings: making them, and the keyed hash that is all we ever store.

A key is `sk-lgw-` + 43 urlsafe characters (32 random bytes). The database holds only
HMAC-SHA256(secret, key): a leaked database does not give out working keys, and without the
secret nobody can even test a guess against it offline. The secret comes from the env var
named by `auth.hash_secret_env`, else from `<storage.data_dir>/key-secret`, generated once.
Every replica must share it (set the env var when several replicas share PostgreSQL).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from llm_gateway.config import Config

log = logging.getLogger(__name__)

KEY_PREFIX = "sk-lgw-"
SECRET_FILE = "key-secret"
# Beyond any key we issue; a longer bearer is refused before it is hashed.
MAX_KEY_CHARS = 256


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(6)


def looks_like_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX) and len(value) <= MAX_KEY_CHARS


def last4(key: str) -> str:
    return key[-4:]


class KeyHasher:
    """HMAC-SHA256 with the gateway's secret; the only form a key takes at rest."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the key hashing secret must be at least 16 bytes")
        self._secret = secret

    def __repr__(self) -> str:  # never print the secret
        return "KeyHasher(<secret>)"

    def hash(self, key: str) -> str:
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()

    def passthrough_id(self, client_key: str) -> str:
        """The key id usage is attributed to in passthrough mode (stable, not reversible)."""
        return "pt_" + self.hash("passthrough:" + client_key)[:16]

    def derive(self, purpose: str) -> bytes:
        """A secret of its own for `purpose`, the same wherever this secret is (every replica).
        The NUL keeps it apart from every key's hash: no bearer token holds one."""
        return hmac.new(self._secret, b"\0derive:" + purpose.encode(), hashlib.sha256).digest()


class LazyHasher:
    """A KeyHasher loaded on first use: a gateway that never sees a key makes no secret file."""

    __slots__ = ("_config", "_env", "_hasher")

    def __init__(self, config: Config, env: Mapping[str, str]) -> None:
        self._config = config
        self._env = env
        self._hasher: KeyHasher | None = None

    def load(self) -> KeyHasher:
        if self._hasher is None:
            self._hasher = load_hasher(self._config, self._env)
        return self._hasher

    def hash(self, key: str) -> str:
        return self.load().hash(key)

    def passthrough_id(self, client_key: str) -> str:
        return self.load().passthrough_id(client_key)

    def derive(self, purpose: str) -> bytes:
        return self.load().derive(purpose)


def load_hasher(config: Config, env: Mapping[str, str]) -> KeyHasher:
    value = env.get(config.auth.hash_secret_env)
    if value:
        return KeyHasher(value.encode())
    return KeyHasher(_file_secret(Path(config.storage.data_dir).expanduser()))


def _file_secret(data_dir: Path) -> bytes:
    path = data_dir / SECRET_FILE
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = secrets.token_hex(32).encode()
    try:
        # O_EXCL: of two processes starting together, one writes and the other reads its file.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secret)
        fh.flush()
        os.fsync(fh.fileno())
    log.info("generated the key hashing secret in %s", path)
    return secret


def _read_secret(path: Path) -> bytes:
    secret = path.read_bytes().strip()
    if not secret:
        # A concurrent creator may not have written it yet; a short wait would hide a real
        # problem (an empty file left behind), so say so instead.
        raise RuntimeError(f"the key hashing secret file {path} is empty; delete it to "
                           "generate a new one (every existing key stops working)")
    return secret
