"""A stand-in for the Hugging Face hub's file API on loopback (what ``HF_ENDPOINT`` points
at): ``/{repo}/resolve/{revision}/{file}`` answers HEAD and GET with a redirect to storage
and the headers the hub sends for Git LFS files (``X-Linked-Size``, ``X-Linked-Etag`` =
sha256); storage serves byte ranges. It can cut a download short once, serve damaged
bytes, and refuse gated repositories without a token."""

from __future__ import annotations

import hashlib

from aiohttp import web

from tests.auxil.servers import LoopbackServer


class HubStandIn(LoopbackServer):
    def __init__(self, files: dict[str, bytes], *, gated: frozenset[str] = frozenset(),
                 token: str = "hf_test") -> None:
        super().__init__()
        self.files = files
        """``repo/file`` -> content."""
        self.gated = gated
        self.token = token
        self.cut_after: int | None = None
        """Close the next download after this many bytes (then serve normally)."""
        self.corrupt = False
        self.ranges: list[str] = []
        """The Range header of each download ("" for a whole file)."""

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{owner}/{repo}/resolve/{revision}/{file}", self._resolve)
        app.router.add_get("/cdn/{owner}/{repo}/{file}", self._storage, allow_head=False)

    async def _resolve(self, request: web.Request) -> web.Response:
        key = f"{request.match_info['owner']}/{request.match_info['repo']}"
        name = f"{key}/{request.match_info['file']}"
        if key in self.gated and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=401, text="gated repository")
        if name not in self.files:
            return web.Response(status=404, text="Entry not found")
        data = self.files[name]
        return web.Response(status=302, headers={
            "Location": f"/cdn/{name}",
            "X-Linked-Size": str(len(data)),
            "X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"',
            "X-Repo-Commit": "0" * 40,
        })

    async def _storage(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        data = self.files[f"{m['owner']}/{m['repo']}/{m['file']}"]
        if self.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        rng = request.headers.get("Range", "")
        self.ranges.append(rng)
        start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
        body = data[start:]
        response = web.StreamResponse(status=206 if rng else 200, headers={
            "Content-Length": str(len(body)), "Accept-Ranges": "bytes"})
        if rng:
            response.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        await response.prepare(request)
        cut, self.cut_after = self.cut_after, None
        step = 64 * 1024
        for i in range(0, len(body), step):
            if cut is not None and i >= cut:
                assert request.transport is not None
                request.transport.close()  # the connection drops mid-file
                return response
            await response.write(body[i:i + step])
        await response.write_eof()
        self.changed()
        return response
