"""The web console at ``/ui``: server-rendered pages (Jinja2, autoescaped) with htmx, signed in
with an API key exchanged for a server-side session.

- The session cookie holds a random token (the database keeps its SHA-256), ``HttpOnly``,
  ``SameSite=Strict``, path ``/ui``, ``Secure`` in production, for ``DATAGATE_UI_SESSION_HOURS``.
  The key behind it is looked up on every request: revoking the key (or changing
  ``DATAGATE_ADMIN_KEY``) ends its sessions; a key keeps at most ten.
- Every form carries a CSRF token: the session's, or before sign-in a double-submit cookie.
- Every page is sent with a Content-Security-Policy without inline scripts or styles, and
  loads nothing from another host (htmx and the stylesheet are served by the gateway).
- Roles and dataset scopes apply exactly as in the API: a page shows what the key could read.
"""

from gateway.ui.routes import install, router

__all__ = ["install", "router"]
