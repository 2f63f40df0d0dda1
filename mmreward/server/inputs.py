"""Turning what a client sent into media the engine may use, safely.

A client names media as a ``data:`` URL or a bare base64 string. The server never reads a local file or
fetches a URL on a client's behalf unless configured to:

* paths (``/x.png``, ``./x.png``, ``file:///x.png``) only under ``allow_local_roots``, after resolving links,
  so ``../`` and symlinks cannot leave the root;
* ``http(s)://`` URLs only for hosts in ``allow_url_hosts``, and even then never to loopback, private,
  link-local or reserved addresses unless ``allow_private_urls`` (the address is checked after DNS
  resolution, and redirects are not followed, so a public name cannot point the server at itself);
* every image is checked against the pixel limit from its header before any pixel is decoded, and every
  video against its duration, frame-count and frame-size limits.

Every refusal is a :class:`RequestError` with an HTTP status, an error code and a message naming the limit
or the rule and what to change.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from PIL import Image

from mmreward.media import MediaError, load_image, open_video
from mmreward.server.settings import ServerSettings


class RequestError(Exception):
    """A request the server refuses: ``status`` (4xx), ``code`` (machine-readable) and a message for humans."""

    def __init__(self, status: int, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param


def limit_error(limit: str, message: str, status: int = 400) -> RequestError:
    return RequestError(status, "limit_exceeded", f"{message} (limit {limit})", param=limit)


_PATH_LIKE = re.compile(r"^(file:|/|\./|\.\./|~|[A-Za-z]:[\\/])")


@dataclass
class MediaResolver:
    settings: ServerSettings

    # ---------------------------------------------------------------------------------------------------------------
    def fetch_bytes(self, ref: str, where: str, max_bytes: int, limit_name: str) -> bytes:
        """The bytes a media reference stands for, or a RequestError saying why not."""
        if not isinstance(ref, str) or not ref:
            raise RequestError(400, "invalid_media", f"{where}: media must be a non-empty string (a data URL)", where)
        if ref.startswith("data:"):
            header, sep, payload = ref.partition(",")
            if not sep or ";base64" not in header:
                raise RequestError(
                    400, "invalid_media", f"{where}: data URL must look like 'data:image/png;base64,<payload>'", where
                )
            return self._b64(payload, where, max_bytes, limit_name)
        scheme = urlparse(ref).scheme.lower() if "://" in ref[:16] else ""
        if scheme in ("http", "https"):
            return self._fetch_url(ref, where, max_bytes, limit_name)
        if scheme and scheme != "file":
            raise RequestError(400, "invalid_media", f"{where}: URL scheme {scheme!r} is not supported", where)
        if not scheme:
            data = self._try_b64(ref, max_bytes, limit_name, where)
            if data is not None:
                return data
            if not _PATH_LIKE.match(ref):
                raise RequestError(
                    400, "invalid_media", f"{where}: not a data URL or valid base64 (invalid base64 payload)", where
                )
        return self._read_local(ref, where, max_bytes, limit_name)

    def image(self, ref: str, where: str) -> Image.Image:
        lim = self.settings.limits
        data = self.fetch_bytes(ref, where, lim.max_image_bytes, "max_image_bytes")
        try:
            return load_image(data, lim.media_limits())
        except MediaError as exc:
            raise _media_error(where, exc) from None

    def video(self, ref: str, where: str) -> bytes:
        """Video bytes, opened once here so limits are checked now (the clip is cached for the engine)."""
        lim = self.settings.limits
        data = self.fetch_bytes(ref, where, lim.max_video_bytes, "max_video_bytes")
        try:
            open_video(data, lim.media_limits())
        except MediaError as exc:
            raise _media_error(where, exc) from None
        return data

    # ---------------------------------------------------------------------------------------------------------------
    @staticmethod
    def _b64(payload: str, where: str, max_bytes: int, limit_name: str) -> bytes:
        if len(payload) * 3 // 4 > max_bytes + 3:
            raise limit_error(limit_name, f"{where}: {len(payload) * 3 // 4} bytes, above {max_bytes}", 413)
        try:
            return base64.b64decode(payload.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RequestError(400, "invalid_media", f"{where}: invalid base64 ({exc})", where) from None

    def _try_b64(self, ref: str, max_bytes: int, limit_name: str, where: str) -> bytes | None:
        """A bare base64 string (not a path): decodes strictly to at least a few dozen bytes."""
        if len(ref) < 64:
            return None
        try:
            return self._b64(ref, where, max_bytes, limit_name)
        except RequestError as exc:
            if exc.code == "limit_exceeded":
                raise
            return None

    def _read_local(self, ref: str, where: str, max_bytes: int, limit_name: str) -> bytes:
        roots = [Path(r).resolve() for r in self.settings.allow_local_roots]
        if not roots:
            raise RequestError(
                400,
                "local_paths_disabled",
                f"{where}: the server does not read local files for clients; send the media as a base64 data URL "
                "(an operator can allow folders with --allow-local-root)",
                where,
            )
        raw = urlparse(ref).path if ref.startswith("file:") else os.path.expanduser(ref)
        path = Path(raw).resolve()
        if not any(path == r or r in path.parents for r in roots):
            raise RequestError(403, "path_not_allowed", f"{where}: path is outside the allowed folders", where)
        if not path.is_file():
            raise RequestError(400, "invalid_media", f"{where}: no such file under the allowed folders", where)
        size = path.stat().st_size
        if size > max_bytes:
            raise limit_error(limit_name, f"{where}: {size} bytes, above {max_bytes}", 413)
        return path.read_bytes()

    def _fetch_url(self, url: str, where: str, max_bytes: int, limit_name: str) -> bytes:
        s = self.settings
        host = (urlparse(url).hostname or "").lower()
        if not s.allow_url_hosts or host not in {h.lower() for h in s.allow_url_hosts}:
            raise RequestError(
                400,
                "url_fetch_disabled",
                f"{where}: the server does not fetch URLs for clients (host {host or '?'} is not allowed); send the "
                "media as a base64 data URL (an operator can allow hosts with --allow-url-host)",
                where,
            )
        if not s.allow_private_urls:
            for addr in _resolve(host, where):
                if not addr.is_global:
                    raise RequestError(
                        403, "address_not_allowed", f"{where}: {host} resolves to a non-public address ({addr})", where
                    )
        import httpx  # noqa: PLC0415

        try:
            with (
                httpx.Client(timeout=s.url_timeout_s, follow_redirects=False) as client,
                client.stream("GET", url) as resp,
            ):
                if resp.status_code != 200:
                    raise RequestError(400, "fetch_failed", f"{where}: GET returned HTTP {resp.status_code}", where)
                chunks, total = [], 0
                for chunk in resp.iter_bytes():
                    total += len(chunk)
                    if total > max_bytes:
                        raise limit_error(limit_name, f"{where}: download above {max_bytes} bytes", 413)
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise RequestError(
                400, "fetch_failed", f"{where}: could not fetch ({type(exc).__name__})", where
            ) from None


def _resolve(host: str, where: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        raise RequestError(400, "fetch_failed", f"{where}: cannot resolve host {host}", where) from None
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def _media_error(where: str, exc: MediaError) -> RequestError:
    text = str(exc)
    m = re.search(r"above (max_\w+)", text)
    if m:
        return limit_error(m.group(1), f"{where}: {text}", 413 if "bytes" in m.group(1) else 400)
    return RequestError(400, "invalid_media", f"{where}: {text}", where)
