# syntax=docker/dockerfile:1
#
# One multi-stage build, two runtime targets:
#   docker build --target server -t fib-rpc-server:dev .
#   docker build --target client -t fib-rpc-client:dev .
#
# Build and runtime share one base: Node 24 on Debian bookworm slim, pinned by tag and
# digest (override with --build-arg NODE_IMAGE=... to move both at once).
ARG NODE_IMAGE=node:24.21.0-bookworm-slim@sha256:0e0ff40c39bc087845bfb27465a0df4ea419520094bc35842ff83dd8cbe6f9b6
# Cross-building (e.g. --platform linux/arm64 on an amd64 machine): the build and prod-deps
# stages run on the machine's own platform, so `npm ci` and tsc need no emulation; only the
# runtime stage is of the target platform, and it runs nothing. Copying node_modules across
# platforms is right only while every production dependency is plain JavaScript (no native
# addon, no platform-specific package, no install script that builds anything), which
# test/repo/dependencies.test.ts checks in package-lock.json. BuildKit (`docker build`) sets
# BUILDPLATFORM and TARGETPLATFORM for FROM lines. buildah 1.28 sets them only inside stages,
# and a stage without --platform after one with it gets that stage's platform, so buildah
# builds pass both, e.g. --build-arg BUILDPLATFORM=linux/amd64 (the machine's) --build-arg
# TARGETPLATFORM=linux/arm64 (the target; test/e2e/local/images.sh passes linux/amd64 twice).
# Left empty, both fall back to the build's platform: a native build is as before. Declared
# before the first FROM, so that FROM lines may use them.
ARG BUILDPLATFORM
ARG TARGETPLATFORM

# ---- build: all dependencies (optional ones included: the TypeScript compiler is a
# native binary shipped in a platform-specific optional package), then tsc.
FROM --platform=$BUILDPLATFORM ${NODE_IMAGE} AS build
WORKDIR /app
# The RPC core is a workspace package (packages/rpc, @fib-rpc/rpc): npm ci links it into
# node_modules from its package.json, so that goes in with the root's.
COPY package.json package-lock.json ./
COPY packages/rpc/package.json ./packages/rpc/
# --ignore-scripts: the `node` devDependency would download a second Node binary in its
# install script; the base image already has Node 24. Its dangling bin link is removed so
# that npm scripts run the base image's node.
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && rm -f node_modules/.bin/node
COPY tsconfig.base.json tsconfig.json ./
COPY packages/rpc/tsconfig.json ./packages/rpc/
COPY packages/rpc/src ./packages/rpc/src
COPY src ./src
RUN npm run build

# ---- prod-deps: production dependencies only, no devDependencies in the runtime.
FROM --platform=$BUILDPLATFORM ${NODE_IMAGE} AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY packages/rpc/package.json ./packages/rpc/
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force

# ---- runtime: shared by both targets, on the target platform. Nothing is written to disk at
# run time, so a read-only root filesystem works.
FROM --platform=$TARGETPLATFORM ${NODE_IMAGE} AS runtime
# package.json's version, passed by `make images` (no default here: a second copy of the
# version would drift; test/unit/version.test.ts checks that nothing restates it).
ARG VERSION
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="fib-rpc" \
      org.opencontainers.image.description="Request/reply RPC over RabbitMQ with end-to-end tracing: a Fibonacci service and its client" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/node:24.21.0-bookworm-slim"
ENV NODE_ENV=production
WORKDIR /app
COPY --from=prod-deps /app/node_modules ./node_modules
# node_modules/@fib-rpc/rpc is npm's link to packages/rpc: the package's manifest and build.
COPY --from=build /app/packages/rpc/package.json ./packages/rpc/
COPY --from=build /app/packages/rpc/dist ./packages/rpc/dist
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
# The image's `node` user, numeric so that Kubernetes can verify runAsNonRoot.
USER 1000:1000

# ---- server: node is PID 1 (no npm, no shell) so SIGTERM reaches the drain logic;
# bin/ names the service and loads telemetry before any application module.
FROM runtime AS server
LABEL org.opencontainers.image.title="fib-rpc-server"
EXPOSE 8080
ENTRYPOINT ["node", "bin/fib-rpc-server.js"]

# ---- client: the CLI; arguments go after the image name (e.g. `--json 30`).
FROM runtime AS client
LABEL org.opencontainers.image.title="fib-rpc-client"
ENTRYPOINT ["node", "bin/fib-rpc-client.js"]
