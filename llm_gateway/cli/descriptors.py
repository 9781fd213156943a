"""Room for `server.max_connections` in the process's file-descriptor limit.

Each open connection holds a descriptor; past the soft limit (`ulimit -n`, often 1,024)
accept() fails for every client long before the gateway's own bound answers its 503. Like
the Go runtime, serve raises the soft limit towards the hard one at start; when even the hard
limit is too low it says so.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

# Descriptors besides clients' connections: upstream and worker connections (their pools),
# the database, logs, spawned workers' pipes.
RESERVE = 1024


def make_room(max_connections: int) -> int:
    """Raise the soft limit to fit ``max_connections`` (within the hard limit); the soft
    limit it leaves."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + RESERVE
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the file-descriptor limit from %d: %s", soft, exc)
    if soft < wanted:
        log.warning(
            "the file-descriptor limit is %d (hard limit %s): fewer than server.max_connections "
            "(%d) plus %d for upstream connections and files, so accept() may fail before the "
            "bound; raise the limit (ulimit -n) or lower server.max_connections", soft,
            "unlimited" if hard == resource.RLIM_INFINITY else hard, max_connections, RESERVE)
    return soft
