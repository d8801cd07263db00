# syntax=docker/dockerfile:1
# One image for every FlexStore role: the command picks it
# (registry, kv, gateway, dev, or a client command such as status).

FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` runs tsc, and the sources are not copied yet.
RUN npm ci --ignore-scripts
COPY tsconfig.json ./
COPY src ./src
# Test suites stay out of the image; dist/test/support stays (the bench's
# process helpers). The bench itself needs the dev dependencies (autocannon,
# vega-lite), so `flexstore bench` runs from a checkout, not from this image.
RUN npm run build \
 && rm -rf dist/test/integration dist/test/faults \
 && find dist -name '*.test.*' -delete

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts again: `prepare` needs the dev dependencies. lmdb loads its
# prebuilt binary from @lmdb/lmdb-linux-x64, so nothing has to be compiled.
RUN npm ci --omit=dev --ignore-scripts \
 && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY bin ./bin
# The code stays root-owned and read-only for the service user; only /data is writable.
RUN mkdir -p /data && chown node:node /data
USER node
# Each container runs one server, so its data dir is the whole volume.
ENV DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 5000 8000 8001
ENTRYPOINT ["node", "bin/flexstore.js"]
CMD ["--help"]
