"""Configuration and login: what the page was started with, and who may see it.

The launcher (`photosearch app`) hands its options to the page through environment variables
(or Streamlit secrets). The password is kept only as a salted scrypt hash, a plain one being
hashed as soon as it is read, and the app refuses to serve the network (started public, or bound
to an address other than loopback) without one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets as secrets_module
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ENV_ALBUM",
    "ENV_INDEX",
    "ENV_PASSWORD",
    "ENV_PASSWORD_HASH",
    "ENV_PUBLIC",
    "SECRETS_SECTION",
    "AppConfig",
    "StartRefused",
    "check_startable",
    "hash_password",
    "is_loopback",
    "is_password_hash",
    "password_hash_from",
    "verify_password",
]


# The launcher (`photosearch app`) hands its options to the page through these variables.
ENV_ALBUM = "PHOTOSEARCH_APP_ALBUM"
ENV_INDEX = "PHOTOSEARCH_APP_INDEX"
ENV_PUBLIC = "PHOTOSEARCH_APP_PUBLIC"
# The password: plain (hashed as soon as it is read) or already hashed (see `hash_password`).
ENV_PASSWORD = "PHOTOSEARCH_APP_PASSWORD"
ENV_PASSWORD_HASH = "PHOTOSEARCH_APP_PASSWORD_HASH"
# In Streamlit secrets (.streamlit/secrets.toml): [photosearch] password = "..." (or
# password_hash = "scrypt$..."), or the two variable names above at the top level.
SECRETS_SECTION = "photosearch"

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class StartRefused(RuntimeError):
    """The app must not start as configured (e.g. network access without a password)."""


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A salted scrypt hash, ``scrypt$N$r$p$<salt>$<hash>`` (base64): what the app keeps."""
    if not password:
        raise ValueError("the password is empty")
    salt = salt if salt is not None else secrets_module.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    encode = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${encode(salt)}${encode(digest)}"


def verify_password(password: str, stored_hash: str | None) -> bool:
    """True when `password` matches `stored_hash` (constant-time comparison)."""
    if not password or not stored_hash:
        return False
    try:
        scheme, n, r, p, salt, expected = stored_hash.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(base64.b64decode(expected)),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, base64.b64decode(expected))


def is_password_hash(value: str) -> bool:
    return value.startswith("scrypt$") and value.count("$") == 5


def password_hash_from(
    environ: Mapping[str, str] | None = None, secrets: Mapping[str, Any] | None = None
) -> str | None:
    """The password hash to check logins against, from the environment or Streamlit secrets.

    A plain password is hashed here, so only the hash is kept in memory.
    """
    environ = os.environ if environ is None else environ
    candidates: list[tuple[str | None, bool]] = [
        (environ.get(ENV_PASSWORD_HASH), True),
        (environ.get(ENV_PASSWORD), False),
    ]
    if secrets is not None:
        section = _mapping_get(secrets, SECRETS_SECTION)
        if isinstance(section, Mapping):
            candidates += [
                (_mapping_get(section, "password_hash"), True),
                (_mapping_get(section, "password"), False),
            ]
        candidates += [
            (_mapping_get(secrets, ENV_PASSWORD_HASH), True),
            (_mapping_get(secrets, ENV_PASSWORD), False),
        ]
    for value, hashed in candidates:
        if not value:
            continue
        value = str(value)
        if hashed:
            if not is_password_hash(value):
                raise StartRefused(
                    "the password hash is not in photosearch's format (scrypt$N$r$p$salt$hash); "
                    "make one with `photosearch app --hash-password`"
                )
            return value
        return hash_password(value)
    return None


def _mapping_get(mapping: Mapping[str, Any], key: str) -> Any:
    try:
        return mapping.get(key)
    except Exception:  # Streamlit secrets raise their own errors when no secrets file exists
        return None


def is_loopback(address: str | None) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if not address:
        return False  # Streamlit's default (no address) listens on every interface
    if address.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: may resolve to anything


def check_startable(public: bool, address: str | None, password_hash: str | None) -> None:
    """Refuse to serve the network without a password (raises StartRefused)."""
    if (public or not is_loopback(address)) and not password_hash:
        raise StartRefused(
            f"refusing to serve photos on the network ({address or 'all interfaces'}) without a "
            f"password: set {ENV_PASSWORD} (or {ENV_PASSWORD_HASH}, or `password` under "
            f"[{SECRETS_SECTION}] in .streamlit/secrets.toml)"
        )


@dataclass(frozen=True)
class AppConfig:
    """What the page was started with."""

    album: str | None  # album location (folder or URL); None: the user picks one
    index: str | None  # index location; None: the album's default index
    public: bool  # started for network access: login required, album fixed, no server copies
    password_hash: str | None

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, secrets: Mapping[str, Any] | None = None
    ) -> AppConfig:
        environ = os.environ if environ is None else environ
        return cls(
            album=environ.get(ENV_ALBUM) or None,
            index=environ.get(ENV_INDEX) or None,
            public=environ.get(ENV_PUBLIC, "").lower() in ("1", "true", "yes"),
            password_hash=password_hash_from(environ, secrets),
        )

    def login_required(self, server_address: str | None) -> bool:
        """Login is needed when started public or bound to an address others can reach."""
        return self.public or not is_loopback(server_address)
