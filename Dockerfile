# One image for every Writ service; the command chooses the role (`up`, `broker`, `worker`, `mcp` …).
# Build: docker build -t writ .   Run: see docker-compose.yml.
# Stage 1 compiles the TypeScript (npm ci runs `prepare`, i.e. the build) and keeps only the
# production dependencies; the image runs plain JavaScript from dist/, with no TypeScript loader.
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY schemas ./schemas
COPY lib ./lib
COPY classify ./classify
COPY masking ./masking
COPY broker ./broker
COPY workers ./workers
COPY approver ./approver
COPY audit ./audit
COPY client ./client
COPY cmd ./cmd
RUN npm ci && npm prune --omit=dev

FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
# Keys, the local nats store and credentials (a volume in docker-compose.yml).
ENV WRIT_HOME=/data
COPY package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# What the package ships of deploy/ (package.json "files"): the local config and policy, the
# NATS roles. Not the rest: deploy/ also holds tests, compose and Kubernetes files, and the
# compose secrets (deploy/compose/secrets, also kept out by .dockerignore).
COPY deploy/local ./deploy/local
COPY deploy/nats/accounts.conf ./deploy/nats/accounts.conf
# /data: WRIT_HOME; /var/lib/writ-bot: the Slack bot's renewed token in docker-compose.yml.
# Both owned by `node`, so named volumes mounted there are writable by it.
RUN mkdir -p /data /var/lib/writ-bot && chown node:node /data /var/lib/writ-bot
USER node
ENTRYPOINT ["node", "dist/cmd/cli.js"]
CMD ["--help"]
