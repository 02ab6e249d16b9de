"""Who is using the page: the signed-in user that the gateway vouches for, or this computer's
owner when the app serves loopback only.

Behind the gateway (`photosearch app --public`) the page trusts the user and role headers only
together with the gateway's per-start token (``PHOTOSEARCH_APP_GATEWAY_TOKEN``, given to the
Streamlit process alone); the gateway strips any such header a client sends. A page started for
the network without that token shows nothing.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ENV_GATEWAY_TOKEN",
    "ENV_OWNER",
    "HEADER_GATEWAY",
    "HEADER_ROLE",
    "HEADER_USER",
    "OWNER",
    "ROLES",
    "User",
    "owner_name",
    "page_user",
]

ENV_GATEWAY_TOKEN = "PHOTOSEARCH_APP_GATEWAY_TOKEN"
ENV_OWNER = "PHOTOSEARCH_APP_OWNER"  # the owner account's name [default: owner]
HEADER_USER = "X-Photosearch-User"
HEADER_ROLE = "X-Photosearch-Role"
HEADER_GATEWAY = "X-Photosearch-Gateway"
OWNER, FRIEND = "owner", "friend"
ROLES = (OWNER, FRIEND)
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")


@dataclass(frozen=True)
class User:
    name: str
    role: str  # OWNER indexes and sees the whole album panel; FRIEND only searches

    @property
    def is_owner(self) -> bool:
        return self.role == OWNER


def owner_name(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    name = environ.get(ENV_OWNER) or OWNER
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"{ENV_OWNER}={name!r} is not an account name")
    return name


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    return value


def page_user(
    headers: Mapping[str, str], public: bool, environ: Mapping[str, str] | None = None
) -> User | None:
    """The user of this browser session, or None: show nothing."""
    environ = os.environ if environ is None else environ
    token = environ.get(ENV_GATEWAY_TOKEN)
    if not token:
        # Without the gateway: loopback only, this computer's owner; never on the network.
        return None if public else User(owner_name(environ), OWNER)
    sent = _header(headers, HEADER_GATEWAY)
    if not sent or not hmac.compare_digest(sent.encode(), token.encode()):
        return None
    name, role = _header(headers, HEADER_USER), _header(headers, HEADER_ROLE)
    if not name or not NAME_PATTERN.fullmatch(name) or role not in ROLES:
        return None
    return User(name, role)
