# stoker GPU worker image: CUDA PyTorch, Node 20, stoker's worker and FIRE tools and their Python
# payloads (worker/python). The kubernetes backend runs it as `stoker worker ...` in
# every training and pool worker pod (STOKER_K8S_WORKER_IMAGE); see docs/kubernetes.md.
#
#   docker build -f docker/worker-gpu.Dockerfile -t stoker-worker-gpu:0.1.0 .
#   docker run --rm --gpus all stoker-worker-gpu:0.1.0 python -c 'import torch; print(torch.cuda.is_available())'
#
# Build arguments: PYTORCH_IMAGE (the CUDA/PyTorch base; its CUDA must suit the nodes'
# driver), NODE_IMAGE (where Node 20 comes from), PYTHON_VERSION and TORCH_VERSION (what
# the base image must hold: the build fails if it holds other ones). It cannot be built on
# this project's development machines (no Docker there); the e2e-kind workflow builds the
# CPU image.
#
# The versions are those bench/gpu-check.sh ran the hf backend with on a GPU, as
# bench/gpu-check-versions.json records them (major.minor: the patch levels were not
# kept, so `==X.Y.*`); test/unit/gpu-image-pins.test.ts fails when the two disagree.
# After a new GPU check: `bash bench/gpu-check.sh --record-versions
# bench/gpu-check-versions.json`, then move these pins to what it wrote.
ARG PYTORCH_IMAGE=pytorch/pytorch:2.11.0-cuda12.8-cudnn9-runtime
ARG NODE_IMAGE=node:20-bookworm-slim
ARG PYTHON_VERSION=3.12
ARG TORCH_VERSION=2.11

# --- stoker, compiled, with its production dependencies only ------------------------------
FROM ${NODE_IMAGE} AS stoker
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would compile before the sources are here.
RUN npm ci --ignore-scripts
# Sources one by one (not `COPY . .`): no host node_modules, .stoker or secrets. A worker
# pod runs only `stoker worker` and the FIRE tools (`stoker data|metrics|report`): the
# worker, the FIRE library and the contracts, not the controller (orchestrator/).
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY common ./common
COPY fire ./fire
COPY worker ./worker
# scripts/bundle.mjs: `npm run build` bundles the entry points (faster start per attempt).
COPY scripts ./scripts
RUN npm run build && npm prune --omit=dev

# --- the worker image ------------------------------------------------------------------
FROM ${NODE_IMAGE} AS node
FROM ${PYTORCH_IMAGE}

# Node: the binary alone (no npm at run time). The PyTorch images are Ubuntu 22.04,
# whose glibc and libstdc++ are newer than Debian bookworm's, which the binary needs.
COPY --from=node /usr/local/bin/node /usr/local/bin/node

ARG PYTHON_VERSION
ARG TORCH_VERSION
# The base image's Python and torch must be those of the GPU check.
RUN python3 -c "import sys, torch; \
py = '%d.%d' % sys.version_info[:2]; tv = torch.__version__.split('+')[0]; \
assert py == '${PYTHON_VERSION}', 'the base image has Python %s, not ${PYTHON_VERSION}' % py; \
assert tv == '${TORCH_VERSION}' or tv.startswith('${TORCH_VERSION}.'), 'the base image has torch %s, not ${TORCH_VERSION}' % tv"

# What the FIRE payloads import beyond torch (worker/python/src/stoker_fire): Hugging Face
# transformers and PEFT at the GPU check's versions; accelerate (the check did not record
# it; transformers 5 needs 1.x); DeepSpeed for ZeRO-3 (the check ran without it: the
# recipe's ZeRO-3 path is not GPU-checked yet); Pillow and PyYAML.
RUN pip install --no-cache-dir \
      'transformers==5.17.*' 'peft==0.21.*' 'accelerate>=1.1,<2' \
      'deepspeed>=0.16,<1' pillow pyyaml

WORKDIR /app
COPY --from=stoker /app /app
COPY worker/python ./worker/python
# The FIRE definitions the reports cite (docs/fire.md).
COPY docs ./docs
# `stoker` and its launcher on PATH: the pod's command is ["stoker-env-fd", "stoker",
# "worker", ...] (STOKER_K8S_WORKER_LAUNCHER, STOKER_K8S_WORKER_COMMAND). The launcher
# moves the variables that come from Secrets onto a descriptor before it execs the
# worker, so a payload cannot read them in the worker's /proc/PID/environ.
RUN printf '#!/bin/sh\nexec /usr/local/bin/node /app/bin/stoker.js "$@"\n' > /usr/local/bin/stoker \
 && chmod 0755 /usr/local/bin/stoker \
 && install -m 0755 /app/worker/bin/stoker-env-fd /usr/local/bin/stoker-env-fd

# The unprivileged user the pods run as (runAsUser/fsGroup 1000, runAsNonRoot), with a
# writable home for the Hugging Face and torch caches unless HF_HOME points elsewhere.
RUN groupadd --gid 1000 stoker \
 && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/stoker stoker
USER 1000:1000
ENV HOME=/home/stoker \
    PYTHONUNBUFFERED=1 \
    NODE_ENV=production

# Payloads name their interpreter in the spec's argv: `python3` here is the base image's
# (with CUDA torch).
ENTRYPOINT ["stoker"]
CMD ["--help"]
