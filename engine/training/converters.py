"""llama.cpp's own GGUF converters, taken from the installed llama-cpp-python's source release.

`python -m engine.training.converters fetch` (run by `.ci/setup --train`/`--dev`) downloads the
sdist of the llama-cpp-python version that is installed and keeps only the converter scripts
and the `gguf-py` library they import, so the converter always matches the llama.cpp that will
load its output. Training code calls them as subprocesses; nothing here is copied from them.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

from engine.errors import ConfigError

_KEEP = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/", "gguf-py/")


def default_dir() -> Path:
    return Path(sys.prefix) / "share" / "doppel" / "llama.cpp"


def _version() -> str:
    return metadata.version("llama-cpp-python")


def fetch(target: Path | None = None) -> Path:
    """Download llama-cpp-python's sdist (pip's cache makes a rerun free), unpack the converters."""
    target = target or default_dir()
    version = _version()
    stamp = target / ".version"
    stamp_text = f"{version} {' '.join(_KEEP)}"
    if stamp.is_file() and stamp.read_text().strip() == stamp_text:
        return target
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--no-binary", ":all:", f"llama-cpp-python=={version}", "-d", tmp],
            check=True,
        )
        (sdist,) = Path(tmp).glob("llama_cpp_python-*.tar.gz")
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                parts = member.name.split("/", 1)
                if len(parts) < 2 or not parts[1].startswith("vendor/llama.cpp/"):
                    continue
                rel = parts[1].removeprefix("vendor/llama.cpp/")
                if not any(rel == k or (k.endswith("/") and rel.startswith(k)) for k in _KEEP):
                    continue
                if not (member.isfile() or member.isdir()):
                    continue
                member.name = rel
                tar.extract(member, target, filter="data")
    stamp.write_text(stamp_text + "\n")
    return target


def find(configured: Path | None = None) -> Path:
    """The converters' folder, or a ConfigError that says how to get it."""
    folder = configured or default_dir()
    if all((folder / keep.rstrip("/")).exists() for keep in _KEEP):
        return folder
    raise ConfigError(
        f"llama.cpp's GGUF converters are not in {folder}: run `.ci/setup --train` "
        "(or `python -m engine.training.converters fetch`)"
    )


def _run(script: Path, args: list[str]) -> None:
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise RuntimeError(f"{script.name} failed:\n{tail}")


def hf_to_gguf(model_dir: Path, out: Path, *, outtype: str = "f16",
               folder: Path | None = None) -> Path:
    """Convert a Hugging Face model folder (config.json, safetensors, tokenizer) to one GGUF."""
    conv = find(folder)
    out.parent.mkdir(parents=True, exist_ok=True)
    _run(conv / "convert_hf_to_gguf.py",
         [str(model_dir), "--outfile", str(out), "--outtype", outtype])
    return out


def lora_to_gguf(adapter_dir: Path, base_dir: Path, out: Path, *, outtype: str = "f16",
                 folder: Path | None = None) -> Path:
    """Convert a PEFT LoRA adapter folder to a GGUF LoRA that llama.cpp applies to the base."""
    conv = find(folder)
    out.parent.mkdir(parents=True, exist_ok=True)
    _run(conv / "convert_lora_to_gguf.py",
         [str(adapter_dir), "--base", str(base_dir), "--outfile", str(out), "--outtype", outtype])
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] != ["fetch"]:
        print("usage: python -m engine.training.converters fetch [DIR]", file=sys.stderr)
        return 2
    folder = fetch(Path(args[1]) if len(args) > 1 else None)
    print(f"GGUF converters in {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
