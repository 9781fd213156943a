"""Which proxy an upstream's connections go through (`upstreams.<name>.proxy`).

`env`, the default, reads the standard variables as curl, requests, httpx and the OpenAI SDK
read them, so a gateway dropped where its clients worked keeps working: `https_proxy` for an
https base_url (`http_proxy` for http), else `all_proxy`, the lower-case name first, then the
upper-case one. `no_proxy` lists what goes direct: `*`, host names (a name covers its
subdomains too; a leading dot is allowed), IP addresses and CIDR ranges (`10.0.0.0/8`, as
Kubernetes setups write them), each optionally with `:port`. A loopback upstream (localhost,
127.0.0.0/8, ::1) is never sent to the environment's proxy, which could not reach it (Go's
HTTP client does the same). `none` goes direct whatever the environment says; a URL names the
proxy itself, for every upstream that names it. A proxy is spoken to in plain `http://` (a
CONNECT tunnel carries TLS to an https upstream end to end; TLS to the proxy itself and SOCKS
are not supported); its user and password, if any, go to the proxy alone
(Proxy-Authorization), never upstream and never into a log or an error message.

The choice is made once per upstream, from its base_url's host, when the config is read (a
bad variable is a config error naming it) and when its transport is built.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

PROXY_SCHEMES = ("http",)


@dataclass(frozen=True)
class Proxy:
    url: str = field(repr=False)  # with its credentials: for the transport alone
    shown: str  # without them: what logs and messages say
    source: str  # the setting or variable it came from


def proxy_problem(value: str) -> str | None:
    """What is wrong with a proxy URL (None: nothing)."""
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises for a port that is not a number in range
    except ValueError:
        # (not urlsplit's message: it may quote a piece of the password)
        return "is not a URL: scheme://[user:password@]host:port, the port 1-65535"
    if parts.scheme not in PROXY_SCHEMES:
        scheme = f"the {parts.scheme} scheme" if parts.scheme else "no scheme"
        return (f"uses {scheme}: a proxy is http://host:port (TLS to the proxy and SOCKS are "
                "not supported; the tunnel to an https upstream is TLS end to end anyway)")
    if not parts.hostname:
        return "names no host"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "has a path, query or fragment: a proxy is http://[user:password@]host:port"
    return None


def without_credentials(url: str) -> tuple[str, str | None]:
    """(the proxy URL without user and password, the Proxy-Authorization value for them)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return _shown(url), "Basic " + base64.b64encode(pair.encode()).decode()


def setting_problem(value: str) -> str | None:
    """The config check of `upstreams.<name>.proxy`."""
    if value in ("env", "none"):
        return None
    problem = proxy_problem(value)
    return None if problem is None else "must be env, none or a proxy URL: it " + problem


def _shown(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def upstream_proxy(setting: str, base_url: str, env: Mapping[str, str]) -> Proxy | None:
    """The proxy for an upstream at `base_url`; ValueError naming the setting or variable
    when the one it names cannot be used."""
    if setting == "none":
        return None
    if setting != "env":
        return Proxy(setting, _shown(setting), "proxy")
    target = urlsplit(base_url)
    if _loopback(target.hostname or ""):
        return None
    scheme = target.scheme
    found = _variable(env, f"{scheme}_proxy") or _variable(env, "all_proxy")
    if found is None:
        return None
    name, value = found
    if "://" not in value:
        value = "http://" + value  # curl's reading of a bare host:port
    no_proxy = _variable(env, "no_proxy")
    port = target.port or (443 if scheme == "https" else 80)
    if no_proxy is not None and bypassed(target.hostname or "", port, no_proxy[1]):
        return None
    problem = proxy_problem(value)
    if problem is not None:
        raise ValueError(f"{name} {problem}")
    return Proxy(value, _shown(value), name)


def _variable(env: Mapping[str, str], lower: str) -> tuple[str, str] | None:
    for name in (lower, lower.upper()):
        value = env.get(name, "").strip()
        if value:
            return name, value
    return None


def bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether `no_proxy` sends host:port direct."""
    host = host.strip("[]").lower().rstrip(".")
    address = _address(host)
    for entry in no_proxy.replace(" ", ",").split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry, wanted = _split_port(entry)
        if wanted is not None and wanted != port:
            continue
        entry = entry.strip("[]")
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass  # a name: it does not match an address
            continue
        name = entry.removeprefix("*").lstrip(".").rstrip(".")  # *.corp, .corp, corp
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _loopback(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address = _address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address is not None and address.is_loopback


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _split_port(entry: str) -> tuple[str, int | None]:
    """`host:port` -> (host, port); an IPv6 address without brackets has no port."""
    if entry.startswith("["):
        close = entry.find("]")
        rest = entry[close + 1:]
        if rest.startswith(":") and rest[1:].isdigit():
            return entry[:close + 1], int(rest[1:])
        return entry, None
    head, sep, tail = entry.rpartition(":")
    if sep and tail.isdigit() and ":" not in head:
        return head, int(tail)
    return entry, None
