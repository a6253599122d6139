# astrops: the same install path as everyone else (`make install`), the demo as the default command.
# CUDA hosts: torch 2.13.0 from PyPI ships its CUDA runtime; run with `docker run --gpus all astrops`.
FROM python:3.11-slim-bookworm

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHON=python3.11
RUN apt-get update \
 && apt-get install -y --no-install-recommends make gcc libc6-dev git \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/astrops
COPY . .
# scripts/sysdeps.sh (called by make) installs libfftw3-dev and libgsl-dev with apt-get
RUN make install && rm -rf /var/lib/apt/lists/*

CMD ["make", "demo"]
