"""Who may sign in: the owner (the app's password) and the friends of the users file.

The users file is JSON,
``{"users": {"<name>": {"role": "friend", "password_hash": "scrypt$..."}}}``, on local disk
or S3 through photosearch.storage, so the same accounts serve a laptop and the AWS task.
Only salted scrypt hashes are kept (photosearch.app.logic.config.hash_password), never a
password. The password given to the app (``PHOTOSEARCH_APP_PASSWORD`` or its hash) is the
owner account, named ``owner`` unless ``PHOTOSEARCH_APP_OWNER`` says otherwise.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from photosearch.app.logic.config import hash_password, is_password_hash
from photosearch.app.logic.identity import ENV_OWNER, FRIEND, NAME_PATTERN, OWNER, ROLES
from photosearch.storage import canonical_location, is_local, open_filesystem

__all__ = [
    "ENV_OWNER",
    "ENV_USERS",
    "FRIEND",
    "OWNER",
    "ROLES",
    "Account",
    "AccountError",
    "Directory",
    "UsersFile",
    "check_account_name",
    "default_users_location",
    "owner_account",
]

ENV_USERS = "PHOTOSEARCH_APP_USERS"  # where the users file lives (path or s3:// URL)
# Lower-case, short, safe as a folder name and in a header: a name is also a storage prefix.
_NAME = NAME_PATTERN


class AccountError(ValueError):
    """A bad account name, role or users file (the message is one line for the user)."""


@dataclass(frozen=True)
class Account:
    name: str
    role: str  # OWNER: indexes and sees the whole album panel; FRIEND: searches only
    password_hash: str

    @property
    def is_owner(self) -> bool:
        return self.role == OWNER


def check_account_name(name: str) -> str:
    """The name, or AccountError: 1-32 of a-z 0-9 . _ -, starting with a letter or digit."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise AccountError(
            f"bad account name {name!r}: use 1 to 32 of a-z, 0-9, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return name


def default_users_location(environ: Mapping[str, str] | None = None) -> str:
    """``PHOTOSEARCH_APP_USERS``, else ``app-users.json`` in the data dir."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_USERS):
        return canonical_location(environ[ENV_USERS])
    from photosearch.index.indexer import data_dir

    return str(data_dir() / "app-users.json")


class UsersFile:
    """The users file at `location` (a path or URL): read, add, remove, list."""

    def __init__(self, location: str) -> None:
        self.location = canonical_location(location)

    def accounts(self) -> dict[str, Account]:
        """The accounts in the file ({} when there is no file yet)."""
        fs, path = open_filesystem(self.location)
        try:
            raw = fs.cat_file(path)
        except FileNotFoundError:
            return {}
        try:
            users = json.loads(raw)["users"]
            found = {}
            for name, entry in users.items():
                check_account_name(name)
                if entry["role"] not in ROLES or not is_password_hash(entry["password_hash"]):
                    raise AccountError(f"account {name!r} has a bad role or password hash")
                found[name] = Account(name, entry["role"], entry["password_hash"])
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise AccountError(f"{self.location}: not a photosearch users file ({error})") from None
        return found

    def add(self, name: str, password: str, role: str = FRIEND) -> Account:
        """Add the account, or set a new password and role for an existing one."""
        check_account_name(name)
        if role not in ROLES:
            raise AccountError(f"bad role {role!r}: one of {', '.join(ROLES)}")
        account = Account(name, role, hash_password(password))
        accounts = self.accounts()
        accounts[name] = account
        self._write(accounts)
        return account

    def remove(self, name: str) -> bool:
        """Remove the account (True if it existed). Its saved people stay until forgotten."""
        accounts = self.accounts()
        if accounts.pop(name, None) is None:
            return False
        self._write(accounts)
        return True

    def _write(self, accounts: Mapping[str, Account]) -> None:
        record = {
            "users": {
                account.name: {"role": account.role, "password_hash": account.password_hash}
                for account in sorted(accounts.values(), key=lambda a: a.name)
            }
        }
        data = (json.dumps(record, indent=2) + "\n").encode()
        fs, path = open_filesystem(self.location)
        if not is_local(fs):
            fs.pipe_file(path, data)  # one PUT replaces an object atomically
            return
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        temporary = f"{path}.{os.getpid()}.tmp"
        # Hashes only, but still nobody else's business: owner-only permissions.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.replace(temporary, path)


class Directory:
    """The accounts the gateway checks logins against: the owner, plus the users file, re-read
    every `refresh_seconds` so that `photosearch app users add | remove` takes effect on a
    running app (a removed user's session ends at their next request)."""

    def __init__(
        self,
        owner: Account | None,
        users: UsersFile | None,
        *,
        refresh_seconds: float = 10.0,
        clock=None,
    ) -> None:
        import threading
        import time

        self.owner = owner
        self.users = users
        self.refresh_seconds = refresh_seconds
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._loaded_at: float | None = None
        self._accounts: dict[str, Account] = {}
        # Checked for unknown names, so a wrong name costs the same time as a wrong password.
        self._decoy = hash_password("decoy password, never valid")
        self.accounts()  # a broken users file stops the start, not the first login

    def accounts(self) -> dict[str, Account]:
        """Every account; raises when the users file cannot be read (at start: refuse)."""
        now = self._clock()
        with self._lock:
            if self._loaded_at is None or now - self._loaded_at >= self.refresh_seconds:
                self._loaded_at = now  # a failing file is retried at the next refresh only
                found = self.users.accounts() if self.users is not None else {}
                if self.owner is not None:
                    found[self.owner.name] = self.owner
                self._accounts = found
            return dict(self._accounts)

    def get(self, name: str) -> Account | None:
        try:
            return self.accounts().get(name)
        except (AccountError, OSError):
            # Unreadable users file (being replaced, storage down): fail closed for friends
            # until it reads again; the owner of the app's own password still gets in.
            with self._lock:
                self._accounts = {self.owner.name: self.owner} if self.owner else {}
            return self._accounts.get(name)

    def verify(self, name: str, password: str) -> Account | None:
        """The account when `password` is its password, else None (same cost either way)."""
        from photosearch.app.logic.config import verify_password

        account = self.get(name)
        stored = account.password_hash if account is not None else self._decoy
        matched = verify_password(password, stored)
        return account if matched and account is not None else None


def owner_account(password_hash: str | None, environ: Mapping[str, str] | None = None):
    """The owner account of the app's password (None without one)."""
    environ = os.environ if environ is None else environ
    if not password_hash:
        return None
    return Account(check_account_name(environ.get(ENV_OWNER) or OWNER), OWNER, password_hash)
