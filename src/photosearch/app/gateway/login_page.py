"""The gateway's sign-in page: one small self-contained HTML form (no scripts, no assets)."""

from __future__ import annotations

from html import escape

__all__ = [
    "LOGIN_PATH",
    "LOGOUT_PATH",
    "login_html",
    "safe_next",
]

LOGIN_PATH = "/_photosearch/login"
LOGOUT_PATH = "/_photosearch/logout"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Photosearch · sign in</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f0f2f6; margin: 0; }}
main {{ max-width: 22rem; margin: 12vh auto; background: #fff; padding: 2rem;
        border-radius: .75rem; box-shadow: 0 1px 4px rgba(0,0,0,.12); }}
h1 {{ margin-top: 0; font-size: 1.6rem; }}
label {{ display: block; margin: 1rem 0 .3rem; }}
input {{ width: 100%; box-sizing: border-box; padding: .55rem; font-size: 1rem; }}
button {{ margin-top: 1.4rem; width: 100%; padding: .6rem; font-size: 1rem; background: #ff4b4b;
          color: #fff; border: 0; border-radius: .4rem; cursor: pointer; }}
.error {{ color: #b00020; margin-top: 1rem; }}
</style></head>
<body><main>
<h1>Photosearch</h1>
<form method="post" action="{action}">
<label for="account">Account</label>
<input id="account" name="account" autocomplete="username" value="{account}" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<input type="hidden" name="next" value="{next}">
<button type="submit">Sign in</button>
</form>
{message}
</main></body></html>
"""


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if target.startswith(LOGIN_PATH) or target.startswith(LOGOUT_PATH):
        return "/"
    return target


def login_html(*, account: str = "", next_path: str = "/", message: str = "") -> str:
    shown = f'<p class="error" role="alert">{escape(message)}</p>' if message else ""
    return _PAGE.format(
        action=LOGIN_PATH,
        account=escape(account[:64]),
        next=escape(safe_next(next_path)),
        message=shown,
    )
