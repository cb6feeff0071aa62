# One image for every Writ service; the command chooses the role.
# Build: docker build -t writ .   Run: see docker-compose.yml.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
# tsx runs the TypeScript sources directly (a production dependency), so no build step.
RUN npm ci --omit=dev && npm cache clean --force
COPY schemas ./schemas
COPY lib ./lib
COPY broker ./broker
COPY workers ./workers
COPY audit ./audit
COPY client ./client
COPY approver ./approver
COPY deploy ./deploy
COPY bin ./bin
# Keys and the local nats store live in .data/ (a volume in docker-compose.yml).
RUN mkdir -p /app/.data && chown node:node /app/.data
USER node
ENTRYPOINT ["node", "--import", "tsx"]
CMD ["cmd/cli.ts", "--help"]
