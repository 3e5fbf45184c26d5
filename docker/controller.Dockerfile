# stoker controller image: the CLI plus the Python payloads' dependencies, so that the
# `local` backend can run worker processes (CPU) inside this container.
#   docker build -f docker/controller.Dockerfile -t stoker:local .
#   docker run --rm -e REDIS_URL=redis://host:6379 stoker:local up
FROM node:20-bookworm-slim

# python3-torch etc. come from Debian so that /usr/bin/python3 imports them, the same
# interpreter the demo and CI use; redis-tools gives redis-cli for debugging.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-torch python3-pil python3-yaml redis-tools \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first, so that source edits do not invalidate this layer.
COPY package.json package-lock.json ./
# --ignore-scripts: the package's own `prepare` (tsc) needs the sources, copied below.
RUN npm ci --ignore-scripts

# Sources listed one by one (not `COPY . .`): a host node_modules or .stoker must not
# land in the image.
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY common ./common
COPY fire ./fire
COPY orchestrator ./orchestrator
COPY worker ./worker
COPY dashboard ./dashboard
COPY scripts ./scripts
COPY training-configs ./training-configs
# The FIRE definitions the reports cite (docs/fire.md).
COPY docs ./docs
RUN npm run build && npm prune --omit=dev
# The launcher that starts a worker with its secrets on a descriptor instead of in its
# environment (a payload can read its worker's /proc/PID/environ): docker-compose.yml's
# worker service, and Kubernetes pods of this image (the kind overlay), run through it.
RUN install -m 0755 worker/bin/stoker-env-fd /usr/local/bin/stoker-env-fd

# Runs data (`.stoker` in the working directory) is a volume in docker-compose.yml;
# creating it here makes a fresh named volume owned by the unprivileged user.
RUN mkdir -p /app/.stoker && chown node:node /app/.stoker
USER node

ENTRYPOINT ["node", "bin/stoker.js"]
CMD ["up"]
