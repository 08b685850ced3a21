# syntax=docker/dockerfile:1
#
# lemon-pl in a container: CUDA build of PyTorch + the `lemon-pl` console script.
#
#   docker build -t lemon-pl .
#   docker run --gpus all --ipc=host \
#     -v "$PWD/data:/workspace/data" -v "$PWD/runs:/workspace/runs" \
#     lemon-pl fit --config configs/pretrain.yaml --config configs/trainer/gpu.yaml
#
# Stages: base (Python + environment) -> builder (the lemon-pl wheel) -> deps (torch, then the
# project's dependencies) -> runtime (the wheel, a non-root user, /workspace).
# Credentials are never part of the image: pass W&B keys at run time (-e WANDB_API_KEY).
# docs/deployment.md has the details (GPUs, volumes, SLURM, W&B offline mode).

FROM python:3.11.13-slim-bookworm AS base
LABEL org.opencontainers.image.title="lemon-pl" \
      org.opencontainers.image.description="Learning to learn multi-operator networks (LeMON) with PyTorch Lightning" \
      org.opencontainers.image.licenses="MIT"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ---------------------------------------------------------------------------------------------
# builder: the lemon-pl wheel only (pure Python; dependencies are resolved in `deps`).
FROM base AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY lemon_pl ./lemon_pl
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---------------------------------------------------------------------------------------------
# deps: torch first, in its own layer, so that editing the source does not re-download it.
# The installed torch is written to a pip constraint file (PIP_CONSTRAINT), so no later
# `pip install` in this image - ours or a user's - can replace it with another build.
# On Linux the default torch wheel is a CUDA build (CUDA libraries come as pip wheels; torch
# 2.13.0 uses CUDA 13.0, NVIDIA driver >= 580). For another CUDA version, point
# TORCH_INDEX_URL at PyTorch's wheel index for it (docs/deployment.md).
FROM base AS deps
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# (its own RUN: a shell remembers where it found `python`, and before this line that is not
# the venv's)
RUN python -m venv "$VIRTUAL_ENV"
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=
RUN { if [ -n "$TORCH_INDEX_URL" ]; then echo "--index-url $TORCH_INDEX_URL"; fi; \
      echo "torch==${TORCH_VERSION}"; } > /tmp/torch.txt \
 && pip install --no-cache-dir -r /tmp/torch.txt \
 && rm /tmp/torch.txt \
 && python -c "from importlib.metadata import version; print('torch==' + version('torch'))" \
      > /opt/venv/constraints.txt
ENV PIP_CONSTRAINT=/opt/venv/constraints.txt

# The runtime dependencies (and the `wandb` extra) exactly as pyproject.toml declares them.
COPY pyproject.toml /tmp/pyproject.toml
RUN python -c "import tomllib; \
      p = tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']; \
      print(*p['dependencies'], *p['optional-dependencies']['wandb'], sep=chr(10))" \
      > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt \
 && rm /tmp/pyproject.toml /tmp/requirements.txt

# ---------------------------------------------------------------------------------------------
# runtime: the wheel, a non-root user (uid 1000) and a writable /workspace for data/ and runs/.
FROM deps AS runtime
COPY --from=builder /wheels/ /tmp/wheels/
RUN pip install --no-cache-dir /tmp/wheels/lemon_pl-*.whl \
 && rm -rf /tmp/wheels \
 && lemon-pl --help > /dev/null \
 && python -c "import lemon_pl.cli.lightning"

RUN useradd --create-home --uid 1000 --user-group --shell /bin/bash lemon \
 && mkdir -p /workspace/data /workspace/runs \
 && chown -R lemon:lemon /workspace
WORKDIR /workspace
# Read-only stage and overlay configs, so `fit --config configs/pretrain.yaml` works as-is;
# mount your own over /workspace/configs to change them.
COPY configs/ /workspace/configs/

USER 1000:1000
ENTRYPOINT ["lemon-pl"]
CMD ["--help"]
