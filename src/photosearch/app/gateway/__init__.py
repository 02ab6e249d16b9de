"""The public app's front door: accounts, rate-limited login, and an authenticating proxy.

`photosearch app --public` runs Streamlit on loopback and this gateway on the public address
(`serve.serve_public`); nothing of the app, not even Streamlit's own upload and media routes,
answers before signing in. Modules, one job each:

- `accounts`: the owner and the users file (scrypt hashes, local disk or S3);
- `limiter`: failed logins slow the next try, per address and per account;
- `login_page`: the sign-in form;
- `proxy`: forwarding HTTP and the WebSocket to Streamlit, with the signed-in user's identity;
- `server`: the Starlette app that ties them together;
- `serve`: starting Streamlit behind it, and stopping both together.
"""

__all__: list[str] = []
