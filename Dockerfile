# syntax=docker/dockerfile:1
# Switchyard's image (issue 14). Node 20 reached end of life in April 2026: the
# image runs on the current LTS, Node 24, while package.json keeps
# `engines.node >=20` (and CI keeps testing on 20) for those who run it on
# their own Node. Both stages use the same base so native bits, if any ever
# appear, are built for the Node that runs them.
ARG NODE_IMAGE=node:24-bookworm-slim

# Build stage: dev dependencies, TypeScript → dist/.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would build before the sources are copied.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY plugins ./plugins
RUN mkdir -p schema && npm run build

# Runtime stage: production dependencies and the compiled output only.
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production HOST=0.0.0.0
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY --from=build /app/schema ./schema
# The admin dashboard page, read at runtime from beside dist/ (plugins/admin.ts).
COPY static ./static
COPY routes.yaml /etc/switchyard/routes.yaml
RUN ln -s /app/dist/src/cli.js /usr/local/bin/switchyard && chmod +x /app/dist/src/cli.js
# The image's `node` user, by number: Kubernetes' runAsNonRoot can only verify a numeric user.
# Nothing is written at runtime (logs go to stdout), so a read-only root filesystem works.
USER 1000:1000
EXPOSE 8080 9901
STOPSIGNAL SIGTERM
ENTRYPOINT ["switchyard"]
CMD ["--config", "/etc/switchyard/routes.yaml"]
