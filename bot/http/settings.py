"""``[api]`` in config.toml: where the HTTP adapter (the web app and the API) listens."""

from __future__ import annotations

from dataclasses import dataclass

from engine.api import bounded


@dataclass(frozen=True)
class ApiConfig:
    enabled: bool = True
    """The HTTP API (``/v1``) in ``doppel run``, beside the bots (``doppel serve``: always)."""
    web_app: bool = True
    """The web app (at ``/``) in ``doppel run`` and ``doppel serve``."""
    host: str = "127.0.0.1"
    port: int = bounded(8000, min=0, max=65535)
    """Where the web app and the API listen; 0: any free port (the log says which)."""
    key_env: str = "DOPPEL_API_KEY"
    """Name of the variable with the API key; when it is unset, only /health is served."""
    max_connections: int = bounded(1000, min=10, max=100_000)
    """Open connections at most: past it, the one waiting longest without a request goes
    (``bot/http/connections.py``)."""
    request_head_s: float = bounded(10.0, min=1, max=300)
    """Time a connection has to send a whole request head (also between kept-alive
    requests); a slower or silent one is closed."""

    @property
    def url(self) -> str:
        """Where it listens, as a link names it."""
        return http_url(self.host, self.port)


def http_url(host: str, port: int) -> str:
    """``http://host:port``, an IPv6 address in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
