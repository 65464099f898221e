# syntax=docker/dockerfile:1
#
# topofix in a container. CPU torch by default; a CUDA build with one build argument.
#
#   docker build -t topofix .                                       # CPU (PyTorch CPU index)
#   docker build -t topofix:cu126 --build-arg TORCH_VARIANT=cu126 . # CUDA 12.6 wheels
#   docker run --rm -v "$PWD/scans:/data/in:ro" -v "$PWD/fixed:/data/out" topofix \
#       correct /data/in -m /data/in/unet.pt -o /data/out --per-slice z --prior 2=1,1
#
# Build arguments (all optional):
#   BASE_IMAGE       an image with python3 (>= 3.10) and its venv module   [python:3.11-slim]
#   TORCH_VARIANT    cpu, or a CUDA tag of the PyTorch index (cu126, cu128, cu130...), or
#                    pypi: the plain PyPI wheel (a CUDA 13 build on Linux x86_64, several GB)
#   TORCH_INDEX_URL  base URL of the PyTorch wheel index (or a mirror with the same layout);
#                    <URL>/<TORCH_VARIANT> is searched for torch. Empty: no extra index.
#   WITH_NNUNET      1: also install the nnunet extra (nnunetv2), for -m with an nnU-Net v2
#                    trained-model folder (README "You have an nnU-Net model"); adds ~350 MB  [0]
# Offline or without access to download.pytorch.org, give the torch wheel from a local folder:
#   docker buildx build --build-context torch-wheels=DIR --build-arg TORCH_INDEX_URL= .
# Behind a TLS-intercepting proxy, give pip its CA bundle (a build secret: not kept in the image):
#   docker build --secret id=pip_cert,src=/etc/ssl/certs/ca-certificates.crt .
# docs/docker.md has the details; scripts/docker-smoke.sh builds and runs it with podman.

ARG BASE_IMAGE=python:3.11-slim

# Local torch wheels, replaced by `--build-context torch-wheels=DIR`. By default it holds one
# file that is not a wheel (so the stage is never empty), and pip finds nothing in it.
FROM scratch AS torch-wheels
COPY constraints.txt /

# ---------------------------------------------------------------------------------------------
# Builder: a virtual environment in /opt/venv with torch and topofix's dependencies, and the
# topofix wheel in /dist. Every dependency has a binary wheel: no compiler is needed.
FROM ${BASE_IMAGE} AS builder

ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl
ARG WITH_NNUNET=0

ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN python3 -m venv /opt/venv

WORKDIR /src
COPY constraints.txt ./

# torch first (the largest layer; rebuilt only when its pin or route changes). Its version is
# the pin in constraints.txt; the local version label (+cpu, +cu126) makes pip take that build
# and nothing else: PyPI's torch wheel for the same version is the CUDA build.
# Then torch's C++ test binaries and headers go (190 MB; the headers serve C++ extensions and
# torch.compile, which topofix does not use): deleted here, they never reach the runtime stage.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,from=torch-wheels,target=/tmp/torch-wheels \
    --mount=type=secret,id=pip_cert \
    set -eu; \
    if [ -f /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    version="$(sed -n 's/^torch==//p' constraints.txt)"; \
    test -n "$version"; \
    set --; \
    if [ "$TORCH_VARIANT" = pypi ]; then \
        requirement="torch==$version"; \
    else \
        requirement="torch==$version+$TORCH_VARIANT"; \
        if [ -n "$TORCH_INDEX_URL" ]; then set -- --extra-index-url "$TORCH_INDEX_URL/$TORCH_VARIANT"; fi; \
    fi; \
    pip install -c constraints.txt --find-links /tmp/torch-wheels "$@" "$requirement"; \
    torch_dir="$(python3 -c 'import importlib.util as u; print(u.find_spec("torch").submodule_search_locations[0])')"; \
    rm -rf "$torch_dir/test" "$torch_dir/include"; \
    if [ -d "$torch_dir/bin" ]; then find "$torch_dir/bin" -maxdepth 1 -type f ! -name torch_shm_manager -delete; fi

# The dependencies, from the project's own metadata (with the dicom extra: highdicom and pydicom,
# for DICOM-SEG output), torch kept at its pin; onnx2torch without
# its dependencies (it asks for torchvision, which topofix does not need). WITH_NNUNET=1 adds the
# nnunet extra here: nnunetv2 and its dependencies, torch still at the pin (the registry's
# torchvision it brings along is never imported by the nnU-Net code topofix runs). Only the metadata
# is copied for this (pyproject.toml, the version module it reads, an empty README), so the
# layer is rebuilt when pyproject.toml or constraints.txt change, not at every source edit.
# The stub package it installs is replaced by the real one in the runtime stage.
COPY pyproject.toml ./
COPY topofix/_version.py ./topofix/
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=pip_cert \
    set -eu; \
    if [ -f /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    touch README.md; \
    extras="dicom"; \
    case "$WITH_NNUNET" in 1) extras="dicom,nnunet" ;; 0) ;; *) echo "WITH_NNUNET must be 0 or 1" >&2; exit 1 ;; esac; \
    pip install -c constraints.txt ".[$extras]" \
    && pip install -c constraints.txt --no-deps onnx2torch

# The topofix wheel, from the full source.
COPY README.md ./
COPY topofix ./topofix
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=pip_cert \
    set -eu; \
    if [ -f /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    pip wheel --no-deps --wheel-dir /dist .

# ---------------------------------------------------------------------------------------------
# Runtime: the base image, the virtual environment, the sample data; no build files, no cache.
FROM ${BASE_IMAGE} AS runtime

LABEL org.opencontainers.image.title="topofix" \
      org.opencontainers.image.description="Check and correct the topology of medical image segmentations" \
      org.opencontainers.image.licenses="Apache-2.0"

# No network at run time: pip may not reach an index, nothing is downloaded.
# NUMBA_CACHE_DIR (compiled persistence kernels) and MPLCONFIGDIR (matplotlib's font list, for
# the HTML report) are filled below and writable by any user: `docker run --user` works too.
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_INDEX=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUMBA_CACHE_DIR=/opt/topofix/numba-cache \
    MPLCONFIGDIR=/opt/topofix/matplotlib

# A fixed UID (1000, the first user of most Linux desktops) so that mounted output folders
# are writable; other users: docker run --user "$(id -u):$(id -g)".
RUN useradd --uid 1000 --user-group --create-home --shell /usr/sbin/nologin topofix \
    && mkdir -p /data/in /data/out \
    && chown topofix:topofix /data /data/in /data/out

# The environment (1.5 GB, cached until the dependencies change), then topofix itself.
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /dist /tmp/dist
RUN pip install --no-cache-dir --no-deps --force-reinstall /tmp/dist/topofix-*.whl \
    && rm -rf /tmp/dist \
    && topofix --version

# Compile the numba kernels once, at build time: without this every `docker run` (a fresh
# container) spends ~15 s compiling them. The cache is keyed by CPU: on another CPU model
# they are compiled again at the first run (hence writable by every user). Same for
# matplotlib's font list.
RUN python3 -c "import numpy as np, topofix; \
rng = np.random.default_rng(0); \
[topofix.persistence(rng.random(s, dtype=np.float32), connectivity=c) \
 for s in ((24, 24), (10, 12, 12)) for c in ('full', 'face')]" \
    && python3 -c "import matplotlib.font_manager" \
    && chmod -R a+rwX /opt/topofix/numba-cache /opt/topofix/matplotlib

# The sample data (masks, images, labels, the demo model) for a first run: see README.md.
COPY sample_data /opt/topofix/sample_data

WORKDIR /data
USER 1000:1000
ENTRYPOINT ["topofix"]
CMD ["--help"]
