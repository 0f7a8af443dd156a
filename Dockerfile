# syntax=docker/dockerfile:1
# gatehouse: a small image on the official Node.js 24 LTS slim base (a line CI tests), running as the non-root `node` user.
#   docker build -t gatehouse .
#   docker run --rm -p 8080:8080 -v "$PWD/my.yaml:/etc/gatehouse/gatehouse.yaml:ro" gatehouse

# ---- build: compile TypeScript (dev dependencies, no native builds needed for tsc)
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- deps: production dependencies only; better-sqlite3 is the one native module
FROM node:24-slim AS deps
# a toolchain in case no prebuilt better-sqlite3 binary fits; it stays in this stage
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm rebuild better-sqlite3 \
 && npm cache clean --force

# ---- runtime: dist/, production node_modules, package.json and config/ only
FROM node:24-slim
ENV NODE_ENV=production \
    GATEHOUSE_CONFIG=/etc/gatehouse/gatehouse.yaml \
    GATEHOUSE_HEALTHCHECK_URL=http://127.0.0.1:9901/healthz
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY config ./config
# the default config at $GATEHOUSE_CONFIG (mount your own over it); durable state in
# /var/lib/gatehouse, which the default `dataDir: ./data` also reaches through /app/data
RUN mkdir -p /etc/gatehouse /var/lib/gatehouse \
 && cp config/gatehouse.yaml /etc/gatehouse/gatehouse.yaml \
 && ln -s /var/lib/gatehouse /app/data \
 && chown node:node /var/lib/gatehouse
# the image's `node` user, by number so Kubernetes' runAsNonRoot can verify it
USER 1000:1000
EXPOSE 8080 15001 9901
# slim has no curl: ask node. Set GATEHOUSE_HEALTHCHECK_URL when the admin address changes.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.GATEHOUSE_HEALTHCHECK_URL).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# A 16 MB young generation: at a sidecar's rates it costs the same CPU as 64 MB and about 15 MB
# less memory (docs/performance.md); a gateway saturated by large bodies sets 64 here.
ENV NODE_OPTIONS=--max-semi-space-size=16
# node is PID 1 and handles SIGTERM itself: drain, flush, exit 0
CMD ["node", "dist/main.js", "run"]
