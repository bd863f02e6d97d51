# syntax=docker/dockerfile:1
# Build stage: dev dependencies, TypeScript → dist/.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would build before the sources are copied.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY plugins ./plugins
RUN mkdir -p schema && npm run build

# Runtime stage: production dependencies and the compiled output only.
FROM node:20-bookworm-slim AS runtime
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
USER node
EXPOSE 8080 9901
STOPSIGNAL SIGTERM
ENTRYPOINT ["switchyard"]
CMD ["--config", "/etc/switchyard/routes.yaml"]
