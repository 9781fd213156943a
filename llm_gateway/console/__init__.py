"""The web console at /ui/: playground, usage and spend, keys and teams, live status.

Server-side pages (Jinja templates) with small ES modules of our own, all inside the package:
no CDN, no build step, works offline. The console reads through the same code as the admin
API and the CLI, and writes only through the gateway's own /admin/... handlers (sub-requests,
subrequest.py), so there is one write path. Sessions, CSRF and who may do what: sessions.py,
guard.py, signin.py.
"""

from llm_gateway.console.app import Console

__all__ = ["Console"]
