#!/usr/bin/env node
/**
 * `tsx cmd/mcp/main.ts [--http PORT] …`: the MCP server as its own process, the same
 * as `writ mcp`. MCP clients that spawn servers (stdio) can point here directly.
 */
import { WritError } from '../../schemas/index.ts';
import { mcpCommand } from './index.ts';

mcpCommand(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`writ mcp: ${e instanceof WritError ? e.code : 'WRIT_INTERNAL'}: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
