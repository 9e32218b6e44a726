# aster-proxy container image. See docs/operations.md.
#
#   docker build -t aster-proxy .
#   docker run -d --name aster-proxy --stop-timeout 20 \
#     -v /srv/aster/config.toml:/etc/aster-proxy/config.toml:ro \
#     -p 26379:26379 -p 2110:2110 aster-proxy
#
# The config must listen on 0.0.0.0 (not 127.0.0.1) to be reachable from outside the container.

# --- build: all dependencies, compile TypeScript to dist/ --------------------------------------
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p .

# --- runtime: production dependencies and the compiled program only ----------------------------
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /opt/aster-proxy
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist/src ./dist/src
COPY bin ./bin
COPY default.toml ./
RUN mkdir -p /etc/aster-proxy
# the unprivileged user of the node image (uid 1000), not root
USER node
# 26379: the listen port of default.toml (use your config's); 2110: metrics, /healthz, /ready
EXPOSE 26379 2110
# /healthz answers while the process runs (port 2110 unless --metrics says otherwise)
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "require('http').get('http://127.0.0.1:2110/healthz', (r) => process.exit(r.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1))"]
# SIGTERM (docker stop) drains the clients for up to 10 s: give it --stop-timeout 20
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "bin/aster-proxy.js"]
CMD ["--config", "/etc/aster-proxy/config.toml"]
