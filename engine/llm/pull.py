"""``doppel model pull``: fetch a recommended (or any) GGUF from the Hugging Face hub, with
progress, resume after an interruption and a sha256 check, into ``<data_dir>/models``.

Only on the user's request: nothing else in Doppel downloads at run time. The hub's file
API is ``GET {endpoint}/{repo}/resolve/{revision}/{file}``; its answer to ``HEAD`` names
the file's size and, for files in Git LFS (every GGUF), its sha256 (``X-Linked-Etag``).
``HF_ENDPOINT`` points it at a mirror, ``HF_TOKEN`` opens gated repositories.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from engine.errors import InputError, ModelError

DEFAULT_ENDPOINT = "https://huggingface.co"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Recommended:
    name: str
    repo: str
    file: str
    size: str
    hardware: str
    licence: str


RECOMMENDED = (
    Recommended("smollm2-1.7b", "bartowski/SmolLM2-1.7B-Instruct-GGUF",
                "SmolLM2-1.7B-Instruct-Q4_K_M.gguf", "1.1 GB", "laptop CPU (8 GB RAM)",
                "Apache-2.0"),
    Recommended("qwen2.5-7b", "bartowski/Qwen2.5-7B-Instruct-GGUF",
                "Qwen2.5-7B-Instruct-Q4_K_M.gguf", "4.7 GB", "8 GB GPU (or 16 GB RAM, slow)",
                "Apache-2.0"),
    Recommended("qwen2.5-14b", "bartowski/Qwen2.5-14B-Instruct-GGUF",
                "Qwen2.5-14B-Instruct-Q4_K_M.gguf", "9.0 GB", "24 GB GPU", "Apache-2.0"),
)


@dataclass(frozen=True)
class Source:
    repo: str
    file: str
    revision: str = "main"


def resolve(name: str) -> Source:
    """A recommended model by name, or ``owner/repo:file.gguf[@revision]``."""
    for r in RECOMMENDED:
        if r.name == name.lower():
            return Source(r.repo, r.file)
    m = re.fullmatch(r"([\w.-]+/[\w.-]+):([^@:]+\.gguf)(?:@([\w.-]+))?", name)
    if m is None:
        names = ", ".join(r.name for r in RECOMMENDED)
        raise InputError(f"unknown model {name!r}", user_message=(
            f"Unknown model {name!r}. Use one of {names} (`doppel model list`), or "
            "owner/repo:file.gguf for any GGUF on the hub."))
    return Source(m.group(1), m.group(2), m.group(3) or "main")


Progress = Callable[[int, int], None]
"""Called with (bytes so far, total bytes) as the download proceeds."""


def pull(source: Source, folder: Path, *, progress: Progress | None = None,
         endpoint: str | None = None, token: str | None = None,
         timeout_s: float = 60.0) -> Path:
    """Download ``source`` into ``folder`` (resuming a ``.part`` left by an interrupted
    pull) and check its sha256; return the file's path. A file already there with the
    right checksum is not fetched again."""
    base = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    token = token or os.environ.get("HF_TOKEN") or None
    url = f"{base}/{source.repo}/resolve/{source.revision}/{source.file}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / Path(source.file).name
    part = dest.with_name(dest.name + ".part")
    with httpx.Client(timeout=timeout_s, follow_redirects=True, headers=headers) as client:
        size, sha256 = _describe(client, url, source)
        if dest.is_file() and dest.stat().st_size == size and (
                sha256 is None or _sha256(dest) == sha256):
            return dest
        done = part.stat().st_size if part.is_file() else 0
        if done > size:
            part.unlink()
            done = 0
        if done < size:
            _fetch(client, url, part, done, size, progress)
    if part.stat().st_size != size:
        raise ModelError(f"{dest.name}: got {part.stat().st_size} of {size} bytes",
                         user_message=f"The download of {dest.name} stopped early; run the "
                                      "same command again to resume it.")
    if sha256 is not None and _sha256(part) != sha256:
        part.unlink()
        raise ModelError(f"{dest.name}: sha256 mismatch", user_message=(
            f"{dest.name} arrived damaged (its sha256 does not match the hub's); the "
            "partial file was removed. Run the command again."))
    part.replace(dest)
    return dest


def _describe(client: httpx.Client, url: str, source: Source) -> tuple[int, str | None]:
    """The file's size and sha256 as the hub states them."""
    try:
        head = client.head(url, follow_redirects=False)
        if head.is_redirect:  # LFS files redirect to storage; the hub's headers say enough
            linked = head.headers.get("x-linked-size")
            if linked is None:
                head = client.head(url)
    except httpx.HTTPError as exc:
        raise ModelError(f"hub unreachable: {exc}", user_message=(
            f"Could not reach the model hub ({exc.__class__.__name__}). Check the network "
            "(or HF_ENDPOINT) and try again.")) from None
    if head.status_code in (401, 403):
        raise InputError(f"{source.repo}: {head.status_code}", user_message=(
            f"{source.repo} needs a Hugging Face token with access to it: set HF_TOKEN."))
    if head.status_code == 404:
        raise InputError(f"{source.repo}/{source.file}: not found", user_message=(
            f"{source.file} was not found in {source.repo} ({source.revision})."))
    if head.status_code >= 400:
        raise ModelError(f"hub answered {head.status_code}",
                         user_message=f"The model hub answered {head.status_code}; try again.")
    size = head.headers.get("x-linked-size") or head.headers.get("content-length")
    if size is None:
        raise ModelError("no size", user_message="The hub did not say how large the file is.")
    etag = (head.headers.get("x-linked-etag") or "").strip('"').removeprefix("W/").strip('"')
    return int(size), etag.lower() if re.fullmatch(r"[0-9a-fA-F]{64}", etag) else None


def _fetch(client: httpx.Client, url: str, part: Path, done: int, size: int,
           progress: Progress | None) -> None:
    """Append the rest of the file to ``part`` (a range request when some is there)."""
    headers = {"Range": f"bytes={done}-"} if done else {}
    try:
        with client.stream("GET", url, headers=headers) as response:
            if response.status_code == 200 and done:  # no range support: start over
                done = 0
            elif response.status_code not in (200, 206):
                raise ModelError(f"download answered {response.status_code}", user_message=(
                    f"The download failed ({response.status_code}); run the command again."))
            with part.open("ab" if done else "wb") as out:
                for chunk in response.iter_bytes(CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, size)
    except httpx.HTTPError as exc:
        raise ModelError(f"download interrupted: {exc}", user_message=(
            f"The download was interrupted after {done / 1e6:.1f} of {size / 1e6:.1f} MB; "
            "run the same command again to resume it.")) from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()
