"""One HTTP GET with every limit: timeouts (per phase and wall clock), size caps on the decoded body,
redirects followed and checked hop by hop, content-type checks and binary sniffing, conditional GET, and an
SSRF guard that vets the address actually connected to.

The guard lives in a custom httpcore network backend: it resolves the host once, refuses the whole name if
any address is private, and connects to the vetted IP itself, so a DNS answer that changes between check and
connect (rebinding) cannot slip through. Host header and TLS SNI still carry the hostname because httpcore
takes them from the request, not from the socket.
"""

from __future__ import annotations

import codecs
import contextlib
import contextvars
import dataclasses
import functools
import ipaddress
import re
import socket
import ssl
import time
import weakref
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http.cookiejar import Cookie, CookieJar
from typing import Any, Literal
from urllib.parse import urlsplit

import httpcore
import httpx

from worker.core.settings import Settings, get_settings

__all__ = [
    "Clients",
    "FetchError",
    "FetchResult",
    "decode_body",
    "decode_html",
    "fetch",
    "is_public_address",
    "make_client",
    "parse_freshness",
    "parse_retry_after",
    "post_form",
]

Kind = Literal["feed", "page", "robots"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 8192
MAX_RETRY_AFTER = 7 * 86400.0  # a hostile or buggy header must not park a feed for years
SNIFF_BYTES = 1024
BOMB_RATIO = 100  # real HTML/XML compresses 5-30x; zeros compress ~1000x
ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309: parse at least 500 KiB; more is not read

PAGE_TYPES = frozenset({"text/html", "application/xhtml+xml"})
FEED_ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
ROBOTS_ACCEPT = "text/plain, */*;q=0.5"
_ACCEPT = {"feed": FEED_ACCEPT, "page": PAGE_ACCEPT, "robots": ROBOTS_ACCEPT}

_BINARY_MAGIC = (
    b"%PDF-", b"\x89PNG", b"GIF87a", b"GIF89a", b"\xff\xd8\xff", b"PK\x03\x04", b"\x1f\x8b", b"RIFF",
    b"ID3", b"OggS", b"\x00\x00\x01\x00", b"BM", b"7z\xbc\xaf", b"Rar!", b"\x7fELF", b"MZ", b"wOFF", b"wOF2",
)
_TEXT_BOMS = (
    codecs.BOM_UTF8, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE,
)


# --- results and errors ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchResult:
    url: str  # final URL after redirects
    status: int  # 2xx, or 304 for not-modified
    body: bytes  # decoded (decompressed) bytes, b"" on 304
    content_type: str  # media type, lower-case, no parameters
    charset: str | None  # from the Content-Type header
    etag: str | None
    last_modified: str | None
    retry_after: float | None  # seconds
    fresh_for: float | None = None  # seconds the server says the response stays fresh (Cache-Control/Expires)
    # rel -> absolute URL from the Link header (RFC 8288), e.g. a WebSub "hub" and "self"
    links: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def not_modified(self) -> bool:
        return self.status == 304


class FetchError(Exception):
    """A download that failed; ``reason`` is a stable slug for metrics and dead letters."""

    def __init__(self, reason: str, message: str, *, retryable: bool = False, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


class BlockedAddressError(httpcore.ConnectError):
    """The guard refused to connect: the host resolves to an address outside the public internet."""


class ResolveError(httpcore.ConnectError):
    """DNS resolution failed; ``transient`` when the resolver said "try again"."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


# --- the address policy -------------------------------------------------------------------------------------

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def is_public_address(address: str | IPAddress) -> bool:
    """True for a globally routable unicast address. IPv6 forms that embed an IPv4 address (mapped, 6to4,
    Teredo, NAT64) are judged by the embedded address, since that is where the packets end up."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public_address(ip.ipv4_mapped)
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not is_public_address(embedded):
            return False
    return not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
        or ip.is_unspecified or not ip.is_global
    )


@dataclass(frozen=True)
class _Policy:
    allow_private: bool
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def permits(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
        if self.allow_private or is_public_address(ip):
            return True
        return any(ip.version == net.version and ip in net for net in self.allowed_networks)


@dataclass(frozen=True)
class _Call:
    """What one ``fetch`` call imposes on the sockets it uses, read by the backend through a context var
    because httpcore gives ``connect_tcp`` and ``read`` no access to the request."""

    deadline: float
    allow_private: bool


_CALL: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("fetch_call", default=None)


def _capped(timeout: float | None) -> float | None:
    call = _CALL.get()
    if call is None:
        return timeout
    remaining = call.deadline - time.monotonic()
    if remaining <= 0:
        raise httpcore.ReadTimeout("total_timeout exceeded")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    """Every socket operation waits at most until the call's deadline, so a server dripping one byte a
    second cannot stretch a download past ``total_timeout``."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _capped(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _capped(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _capped(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    def __init__(self, policy: _Policy) -> None:
        self._policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        call = _CALL.get()
        policy = self._policy
        if call is not None and not call.allow_private and policy.allow_private:
            policy = _Policy(False, policy.allowed_networks)  # the call may tighten the client, never loosen
        addresses = _resolve(host, port)
        for address in addresses:
            if not policy.permits(address):
                raise BlockedAddressError(f"{host} resolves to non-public address {address}")
        last: Exception | None = None
        for address in addresses:  # connect to the vetted address itself: no second lookup to rebind
            try:
                stream = self._inner.connect_tcp(address, port, _capped(timeout), local_address,
                                                 socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
                continue
            return _DeadlineStream(stream)
        assert last is not None  # _resolve never returns an empty list
        raise last

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        raise BlockedAddressError("unix sockets are not fetched")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ResolveError(f"cannot resolve {host}: {exc}", transient=exc.errno == socket.EAI_AGAIN) from exc
    except (UnicodeError, ValueError) as exc:
        raise ResolveError(f"cannot resolve {host!r}: {exc}", transient=False) from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise ResolveError(f"no addresses for {host}", transient=False)
    return addresses


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """One verifying TLS context per process: loading the CA bundle costs ~35 ms, and contexts are shareable."""
    return httpx.create_ssl_context(trust_env=False)


class _GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with the guarded backend plugged in. HTTPTransport has no ``network_backend``
    argument, so the pool it builds is replaced by an identical one that has."""

    def __init__(self, policy: _Policy, limits: httpx.Limits) -> None:
        # the shared context: left to itself, HTTPTransport would load the CA bundle again for a pool it drops
        super().__init__(verify=_ssl_context(), trust_env=False, limits=limits)
        self._pool.close()
        self._pool = httpcore.ConnectionPool(
            ssl_context=_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(policy),
        )


_CLIENT_POLICIES: weakref.WeakKeyDictionary[httpx.Client, _Policy] = weakref.WeakKeyDictionary()


def make_client(settings: Settings | None = None, *, allowed_networks: Sequence[str] = (),
                keepalive: int = 20) -> httpx.Client:
    """A pooled client. ``allowed_networks`` (CIDRs), and those of the ``allowed_networks`` setting, stay
    reachable when private networks are refused, e.g. an internal feed mirror. Proxies from the environment
    are ignored on purpose: through a proxy the guard would vet the proxy, not the destination."""
    settings = settings or get_settings()
    policy = _Policy(settings.allow_private_networks,
                     tuple(ipaddress.ip_network(net, strict=False)
                           for net in (*settings.allowed_networks, *allowed_networks)))
    # as many connections as download threads; the download threads are the real cap
    limits = httpx.Limits(max_connections=max(100, settings.download_concurrency + 20),
                          max_keepalive_connections=keepalive, keepalive_expiry=30.0)
    client = httpx.Client(
        transport=_GuardedTransport(policy, limits),
        timeout=_timeout(settings, None),
        headers={"User-Agent": settings.user_agent},
        follow_redirects=False,
        trust_env=False,
        event_hooks={"response": [_vet_location]},
    )
    # Cookies must not leak from one site's fetch into another's, nor pile up in a long-lived process;
    # redirect chains get a private jar in fetch. (The Client constructor copies jars, hence the late swap.)
    client.cookies.jar = _DiscardingJar()
    _CLIENT_POLICIES[client] = policy
    return client


class Clients:
    """The guarded clients of a process that downloads from many hosts at once, each host always on the same
    one of ``SHARDS`` clients.

    httpx keeps all of a client's connections in one list and scans it several times for every request; with a
    keep-alive connection to each of hundreds of hosts, those scans cost ~5 ms of CPU a page (measured with
    cProfile on the download worker). Spread over shards, each scan is short, and a host's next request still
    finds its kept-alive connection."""

    SHARDS = 16

    def __init__(self, settings: Settings | None = None, *, allowed_networks: Sequence[str] = ()) -> None:
        settings = settings or get_settings()
        keepalive = max(8, 2 * settings.download_concurrency // self.SHARDS)
        self._clients = [make_client(settings, allowed_networks=allowed_networks, keepalive=keepalive)
                         for _ in range(self.SHARDS)]

    def for_url(self, url: str) -> httpx.Client:
        host = urlsplit(url).hostname or ""
        return self._clients[zlib.crc32(host.encode("utf-8", "replace")) % self.SHARDS]

    def close(self) -> None:
        for client in self._clients:
            client.close()


def _vet_location(response: httpx.Response) -> None:
    """httpx parses a redirect's Location inside ``send`` even when not following it, and chokes on
    ``javascript:`` and the like; judge the scheme first so the error says what happened."""
    location = response.headers.get("Location") if response.is_redirect else None
    if location is not None and _CALL.get() is not None and _scheme(location) not in ("", "http", "https"):
        raise FetchError("bad_scheme", f"redirect to a {_scheme(location)}: URL")


class _DiscardingJar(CookieJar):
    def set_cookie(self, cookie: Cookie) -> None:
        pass

    def extract_cookies(self, response: Any, request: Any) -> None:
        pass


# --- the download ------------------------------------------------------------------------------------------


def fetch(url: str, *, kind: Kind, settings: Settings | None = None, etag: str | None = None,
          last_modified: str | None = None, client: httpx.Client | None = None) -> FetchResult:
    """GET ``url`` following redirects, within every limit in ``settings``; raises FetchError."""
    settings = settings or get_settings()
    with _guarded(settings, client) as (http, policy, deadline):
        return _fetch(http, url, kind, settings, policy, deadline, etag, last_modified)


@contextlib.contextmanager
def _guarded(settings: Settings, client: httpx.Client | None) -> Iterator[tuple[httpx.Client, _Policy, float]]:
    """One guarded call: the client (a throwaway one unless given), the address policy that settings allow,
    and the wall-clock deadline that the connection backend enforces on every read and write."""
    http = make_client(settings) if client is None else client
    policy = _CLIENT_POLICIES.get(http) or _Policy(
        settings.allow_private_networks, tuple(ipaddress.ip_network(net, strict=False)
                                               for net in settings.allowed_networks))
    if not settings.allow_private_networks:
        policy = _Policy(False, policy.allowed_networks)
    deadline = time.monotonic() + settings.total_timeout
    token = _CALL.set(_Call(deadline, settings.allow_private_networks))
    try:
        yield http, policy, deadline
    finally:
        _CALL.reset(token)
        if client is None:
            http.close()


def _fetch(client: httpx.Client, url: str, kind: Kind, settings: Settings, policy: _Policy, deadline: float,
           etag: str | None, last_modified: str | None) -> FetchResult:
    limit = {"feed": settings.max_feed_bytes, "page": settings.max_page_bytes,
             "robots": min(settings.max_page_bytes, ROBOTS_MAX_BYTES)}[kind]
    current = _check_url(url, policy)
    jar = httpx.Cookies()  # lives for this redirect chain only
    seen: set[tuple[str, str]] = set()
    hops = 0
    while True:
        state = (str(current), repr(sorted(jar.items())))  # same URL with new cookies is a cookie dance
        if state in seen:
            raise FetchError("redirect_loop", f"redirect loop at {_short(current)}")
        seen.add(state)
        headers = {"Accept": _ACCEPT[kind],
                   "Accept-Encoding": "gzip, deflate", "User-Agent": settings.user_agent}
        if kind == "feed" and etag:
            headers["If-None-Match"] = etag
        if kind == "feed" and last_modified:
            headers["If-Modified-Since"] = last_modified
        try:
            request = client.build_request("GET", current, headers=headers,
                                           timeout=_timeout(settings, deadline))
            jar.set_cookie_header(request)
            response = client.send(request, stream=True, follow_redirects=False)
        except httpx.InvalidURL as exc:  # only the Location of a redirect can be invalid at this point
            raise FetchError("invalid_url", f"bad redirect target from {_short(current)}: {exc}") from exc
        except (httpx.HTTPError, httpcore.ConnectError) as exc:
            raise _map_error(exc, deadline) from exc
        try:
            _check_peer(response, policy)
            location = response.headers.get("Location") if response.is_redirect else None
            if location is not None:
                jar.extract_cookies(response)
                hops += 1
                if hops > settings.max_redirects:
                    raise FetchError("too_many_redirects", f"more than {settings.max_redirects} redirects")
                location = location.strip()
                if _scheme(location) not in ("", "http", "https"):
                    raise FetchError("bad_scheme", f"redirect to a {_scheme(location)}: URL")
                try:
                    target = current.join(location)
                except httpx.InvalidURL as exc:
                    raise FetchError("invalid_url", f"bad redirect target {location[:200]!r}") from exc
                current = _check_url(str(target), policy)
                continue
            return _finish(response, current, kind, limit, deadline)
        except httpx.HTTPError as exc:
            raise _map_error(exc, deadline) from exc
        finally:
            response.close()


def _finish(response: httpx.Response, url: httpx.URL, kind: Kind, limit: int, deadline: float) -> FetchResult:
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status >= 500:
        raise FetchError("http_5xx", f"HTTP {status}", retryable=True, status=status, retry_after=retry_after)
    if status >= 400:
        raise FetchError("http_4xx", f"HTTP {status}", retryable=status in (408, 429), status=status,
                         retry_after=retry_after)
    media, charset = parse_content_type(response.headers.get("Content-Type", ""))
    result = FetchResult(url=str(url), status=status, body=b"", content_type=media, charset=charset,
                         etag=response.headers.get("ETag"),
                         last_modified=response.headers.get("Last-Modified"), retry_after=retry_after,
                         fresh_for=parse_freshness(response.headers), links=_links(response, url))
    if status == 304:
        # drain the (empty) body so httpx keeps the connection for the next poll of this host
        _read_body(response, limit, deadline)
        return result
    if not 200 <= status < 300:
        raise FetchError("protocol", f"unexpected HTTP {status} without a usable Location", status=status)
    _check_content_type(kind, media)
    declared = response.headers.get("Content-Length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise FetchError("too_large", f"Content-Length {declared} exceeds {limit} bytes", status=status)
    body = _read_body(response, limit, deadline)
    if _looks_binary(body[:SNIFF_BYTES]):
        raise FetchError("content_type", f"{media or 'unlabelled'} body looks binary", status=status)
    return dataclasses.replace(result, body=body)


def _read_body(response: httpx.Response, limit: int, deadline: float) -> bytes:
    decoder = _Decoder(response.headers.get("Content-Encoding", ""), limit)
    parts: list[bytes] = []
    sniffed = False
    for raw in response.iter_raw():
        if time.monotonic() > deadline:
            raise FetchError("timeout", "total_timeout exceeded while downloading", retryable=True)
        parts.extend(decoder.feed(raw))
        if not sniffed and decoder.produced >= SNIFF_BYTES:
            # Stop a mislabelled image or archive before downloading all of it.
            sniffed = True
            if _looks_binary(b"".join(parts)[:SNIFF_BYTES]):
                raise FetchError("content_type", "body looks binary")
    parts.extend(decoder.finish())
    return b"".join(parts)


class _Decoder:
    """Streaming gzip/deflate with the output capped: never inflates more than ``limit + 1`` bytes, so a
    bomb costs a bounded amount of memory and CPU before it is refused."""

    def __init__(self, header: str, limit: int) -> None:
        codings = [c.strip().lower() for c in header.split(",") if c.strip().lower() not in ("", "identity")]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise FetchError("protocol", f"unsupported Content-Encoding {header[:100]!r}")
        self.coding = codings[0] if codings else None
        self.limit = limit
        self.raw = 0
        self.produced = 0
        self._z: Any = None
        self._deflate_tried_raw = False
        if self.coding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self.coding == "deflate":
            self._z = zlib.decompressobj(zlib.MAX_WBITS)

    def feed(self, data: bytes) -> Iterator[bytes]:
        self.raw += len(data)
        if self._z is None:
            self._count(len(data))
            yield data
            return
        pending = data
        while pending and not self._z.eof:
            try:
                out = self._z.decompress(pending, self.limit - self.produced + 1)
            except zlib.error as exc:
                if self.coding == "deflate" and not self._deflate_tried_raw and self.produced == 0:
                    # "deflate" is often sent as a raw stream without the zlib header.
                    self._deflate_tried_raw = True
                    self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise FetchError("protocol", f"corrupt {self.coding} body: {exc}") from exc
            self._count(len(out), pending_tail=len(self._z.unconsumed_tail))
            yield out
            pending = self._z.unconsumed_tail

    def finish(self) -> Iterator[bytes]:
        if self._z is not None and not self._z.eof:
            out = self._z.flush()  # a truncated stream: keep what inflated, as browsers do
            self._count(len(out))
            yield out

    def _count(self, n: int, pending_tail: int = 0) -> None:
        self.produced += n
        if self.produced <= self.limit:
            return
        consumed = max(self.raw - pending_tail, 1)
        if self._z is not None and self.produced > BOMB_RATIO * consumed:
            raise FetchError("decompression_bomb",
                             f"{consumed} compressed bytes inflate past the {self.limit}-byte limit")
        raise FetchError("too_large", f"body exceeds {self.limit} bytes")


def _links(response: httpx.Response, base: httpx.URL) -> dict[str, str]:
    """The Link header's targets by relation (first one wins), made absolute against the response URL."""
    found: dict[str, str] = {}
    try:
        links = response.links
    except (ValueError, KeyError):  # a mangled header is no reason to drop the body
        return found
    for item in links.values():
        target = (item.get("url") or "").strip()
        for rel in (item.get("rel") or "").lower().split():
            if target and rel not in found:
                try:
                    found[rel] = str(base.join(target))
                except httpx.InvalidURL:
                    continue
    return found


def post_form(url: str, data: dict[str, str], *, settings: Settings | None = None,
              client: httpx.Client | None = None) -> int:
    """POST a form (``application/x-www-form-urlencoded``) under the same guard and time limits as ``fetch``;
    a 307/308 redirect is followed with the same body, each hop checked. Returns the final status (any
    non-redirect, 4xx/5xx included: the caller judges); raises FetchError when no answer came."""
    settings = settings or get_settings()
    with _guarded(settings, client) as (http, policy, deadline):
        current = _check_url(url, policy)
        for _ in range(settings.max_redirects + 1):
            try:
                request = http.build_request("POST", current, data=data, timeout=_timeout(settings, deadline),
                                             headers={"User-Agent": settings.user_agent})
                # streamed and never read: a hub's answer body is of no use and must not be unbounded
                response = http.send(request, stream=True, follow_redirects=False)
            except (httpx.HTTPError, httpcore.ConnectError) as exc:
                raise _map_error(exc, deadline) from exc
            try:
                _check_peer(response, policy)
            finally:
                response.close()
            location = response.headers.get("Location") if response.status_code in (307, 308) else None
            if location is None:
                return response.status_code
            try:
                current = _check_url(str(current.join(location.strip())), policy)
            except httpx.InvalidURL as exc:
                raise FetchError("invalid_url", f"bad redirect target {location[:200]!r}") from exc
        raise FetchError("too_many_redirects", f"more than {settings.max_redirects} redirects")


# --- checks ------------------------------------------------------------------------------------------------


def _check_url(url: str, policy: _Policy) -> httpx.URL:
    text = (url or "").strip()
    if not text or len(text) > MAX_URL_LENGTH or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise FetchError("invalid_url", f"invalid URL {text[:200]!r}")
    scheme = _scheme(text)
    if scheme and scheme not in ("http", "https"):
        raise FetchError("bad_scheme", f"refusing {scheme}: URL")
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise FetchError("invalid_url", f"invalid URL {text[:200]!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FetchError("invalid_url", f"not an absolute http(s) URL: {text[:200]!r}")
    if not _HOST.fullmatch(parsed.raw_host.decode("ascii", "replace")) or not 0 < (parsed.port or 80) < 65536:
        raise FetchError("invalid_url", f"bad host or port in {text[:200]!r}")
    # An IP literal is judged before any pooled connection to it could be reused.
    try:
        literal = ipaddress.ip_address(parsed.host)
    except ValueError:
        literal = None
    if literal is not None and not policy.permits(str(literal)):
        raise FetchError("private_address", f"refusing non-public address {literal}")
    return parsed


_HOST = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?|[0-9a-f:.]+",
                   re.IGNORECASE)


def _scheme(url: str) -> str:
    match = re.match(r"\s*([A-Za-z][A-Za-z0-9+.-]*):", url)
    return match.group(1).lower() if match else ""


def _check_peer(response: httpx.Response, policy: _Policy) -> None:
    """The address the response really came from: catches a pooled connection opened under a looser policy,
    and clients not made by ``make_client``."""
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if peer and not policy.permits(str(peer[0])):
        raise FetchError("private_address", f"connected to non-public address {peer[0]}")


def _check_content_type(kind: Kind, media: str) -> None:
    if kind == "page":
        ok = media in PAGE_TYPES or media == ""
    elif kind == "robots":
        ok = media == "" or media.startswith("text/")  # text/plain by RFC 9309; text/html from catch-all sites
    else:
        # Feeds are often mislabelled (text/html, text/plain, octet-stream): the parser decides those.
        ok = (media == "" or media.startswith("text/") or media == "application/octet-stream"
              or any(word in media for word in ("xml", "rss", "atom", "json")))
    if not ok:
        raise FetchError("content_type", f"refusing {media} for a {kind}")


_CONTROL_BYTES = bytes(b for b in range(0x20) if b < 0x09 or b >= 0x0E)  # C0 controls but \t \n \v \f \r


def _looks_binary(head: bytes) -> bool:
    if not head:
        return False
    if head.startswith(_TEXT_BOMS):
        return False
    stripped = head.lstrip()
    if stripped.startswith(_BINARY_MAGIC):
        return True
    if head.startswith((b"<\x00", b"\x00<")):  # BOM-less UTF-16 XML, which the XML spec allows
        return False
    if b"\x00" in head:
        return True
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))  # counted in C, not byte by byte
    return controls > len(head) // 10


def parse_content_type(header: str) -> tuple[str, str | None]:
    """``"Text/HTML; charset=UTF-8"`` -> ``("text/html", "utf-8")``."""
    media, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip("\"'").lower() or None
    return media.strip().lower(), charset


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), clamped to [0, 7 days]."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


# max-age only: s-maxage is for shared caches, and we are a private one
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,12})\b", re.IGNORECASE)


def parse_freshness(headers: httpx.Headers) -> float | None:
    """Seconds the response stays fresh: ``Cache-Control: max-age`` less ``Age``, else ``Expires`` less
    ``Date`` (RFC 9111 4.2.1); None when the server says nothing, or says not to cache."""
    cache_control = headers.get("Cache-Control", "")
    if re.search(r"no-(?:store|cache)", cache_control, re.IGNORECASE):
        return None
    if (m := _MAX_AGE.search(cache_control)) is not None:
        age = headers.get("Age", "").strip()
        fresh = float(m.group(1)) - (float(age) if age.isdigit() else 0.0)
        return min(fresh, MAX_RETRY_AFTER) if fresh > 0 else None
    try:
        expires = parsedate_to_datetime(headers.get("Expires", ""))
        date_header = headers.get("Date")
        date = parsedate_to_datetime(date_header).timestamp() if date_header else time.time()
    except (TypeError, ValueError, IndexError):
        return None  # an invalid Expires ("0", "-1") means already expired
    if expires.tzinfo is None:
        return None
    fresh = expires.timestamp() - date
    return min(fresh, MAX_RETRY_AFTER) if fresh > 0 else None


def _timeout(settings: Settings, deadline: float | None) -> httpx.Timeout:
    remaining = settings.total_timeout if deadline is None else max(deadline - time.monotonic(), 0.001)
    connect = min(settings.connect_timeout, remaining)
    read = min(settings.read_timeout, remaining)
    return httpx.Timeout(connect=connect, read=read, write=read, pool=connect)


def _map_error(exc: BaseException, deadline: float) -> FetchError:
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for link in chain:
        if isinstance(link, FetchError):
            return link
        if isinstance(link, BlockedAddressError):
            return FetchError("private_address", str(link))
        if isinstance(link, ResolveError):
            return FetchError("dns", str(link), retryable=link.transient)
    if isinstance(exc, httpx.TimeoutException):
        what = "total_timeout exceeded" if time.monotonic() >= deadline - 0.01 else f"{type(exc).__name__}"
        return FetchError("timeout", f"{what}: {exc}", retryable=True)
    if any(isinstance(link, ssl.SSLError) for link in chain):
        return FetchError("tls", f"TLS failure: {exc}")
    if isinstance(exc, httpx.InvalidURL):
        return FetchError("invalid_url", str(exc))
    if isinstance(exc, httpx.UnsupportedProtocol):
        return FetchError("bad_scheme", str(exc))
    if isinstance(exc, httpx.RemoteProtocolError):
        # Mostly "server disconnected" mid-response: transient often enough to deserve a retry.
        return FetchError("protocol", f"protocol error: {exc}", retryable=True)
    if isinstance(exc, httpx.LocalProtocolError):
        return FetchError("protocol", f"cannot send request: {exc}")
    if isinstance(exc, httpx.TransportError | httpcore.ConnectError):
        return FetchError("connect", f"{type(exc).__name__}: {exc}", retryable=True)
    return FetchError("protocol", f"{type(exc).__name__}: {exc}")


def _short(url: httpx.URL) -> str:
    return str(url)[:200]


# --- decoding pages -----------------------------------------------------------------------------------------

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
# WHATWG: browsers decode these labels as windows-1252, and so do real pages that declare them.
_ALIASES = {"iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "us-ascii": "cp1252",
            "ascii": "cp1252", "iso8859-1": "cp1252", "x-user-defined": "cp1252"}


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    label = _ALIASES.get(label.strip().lower(), label.strip().lower())
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def decode_html(result: FetchResult) -> str:
    return decode_body(result.body, result.charset)


def decode_body(body: bytes, charset: str | None) -> str:
    """A page's bytes as text: BOM first (it wins over the header, as in browsers), then the header's
    ``charset``, then ``<meta charset>``, then detection, then UTF-8; undecodable bytes become U+FFFD."""
    for bom, name in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                      (codecs.BOM_UTF16_BE, "utf-16")):
        if body.startswith(bom):
            return body.decode(name, "replace")
    encoding = _codec(charset)
    if encoding is None:
        match = _META_CHARSET.search(body[:4096])
        encoding = _codec(match.group(1).decode("ascii", "replace")) if match else None
    if encoding is None:
        encoding = _detect(body)
    return body.decode(encoding or "utf-8", "replace")


def _detect(body: bytes) -> str | None:
    try:
        body.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - installed with requests/httpx extras, but optional
        return None
    matches = list(from_bytes(body[:65536]))
    if not matches:
        return None
    best = min(matches, key=lambda m: m.chaos)
    # Short markup-heavy Western text is where detectors flounder (French comes out as Baltic); the web's
    # customary fallback, windows-1252, wins whenever it is nearly as clean as the favourite.
    western = next((m for m in matches if m.encoding == "cp1252"), None)
    if western is not None and western.chaos <= best.chaos + 0.2:
        return "cp1252"
    return _codec(best.encoding)
