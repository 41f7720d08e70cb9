"""The aiohttp transport: one ClientSession with a bounded keep-alive pool.

Its errors keep aiohttp's class names in their text ("ClientConnectorError: ...") as
before the seam, so stored errors read the same whichever version wrote them.
"""

from __future__ import annotations

import aiohttp

from host.errors import HttpError
from host.httpclient import Response, tls_context


class AiohttpTransport:
    """:class:`host.httpclient.Transport` over aiohttp."""

    name = "aiohttp"

    def __init__(self, max_connections: int, ca_file: str | None = None) -> None:
        connector = aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=300,
                                         ssl=tls_context(ca_file))
        # trust_env=False: no proxy from the environment, only the one configured.
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True,
                                              trust_env=False)

    async def request(self, method: str, url: str, headers: dict[str, str],
                      body: bytes | None, timeout: float, *, proxy: str | None = None,
                      proxy_headers: dict[str, str] | None = None,
                      limit: int | None = None) -> Response:
        try:
            async with self._session.request(
                    method, url, headers=headers, data=body or None,
                    timeout=aiohttp.ClientTimeout(total=timeout), proxy=proxy,
                    proxy_headers=proxy_headers, allow_redirects=False) as answer:
                data = await (answer.read() if limit is None else _read_some(answer, limit))
                return Response(answer.status,
                                {k.lower(): v for k, v in answer.headers.items()}, data)
        except TimeoutError as exc:
            raise HttpError("timed out", timed_out=True) from exc
        except aiohttp.ClientConnectorError as exc:
            raise HttpError(f"{type(exc).__name__}: {exc}",
                            connect_failure=str(exc.os_error or exc)) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise HttpError(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        await self._session.close()


async def _read_some(answer: aiohttp.ClientResponse, limit: int) -> bytes:
    """Up to ``limit`` bytes of the answer (all of it keeps the connection)."""
    data = b""
    while len(data) < limit:
        chunk = await answer.content.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return data
