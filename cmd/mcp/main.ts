#!/usr/bin/env node
/**
 * `tsx cmd/mcp/main.ts [--http PORT] …`: the MCP server as its own process, the same
 * as `writ mcp`. MCP clients that spawn servers (stdio) can point here directly.
 */
import { WritError } from '../../schemas/index.ts';
import { exitQuietlyOnClosedPipe, exitWhenFlushed } from '../paths.ts';
import { mcpCommand } from './index.ts';

// The last protocol message must reach the client before the process ends.
exitQuietlyOnClosedPipe();
mcpCommand(process.argv.slice(2)).then(
  (code) => exitWhenFlushed(code),
  (e: unknown) => {
    process.stderr.write(`writ mcp: ${e instanceof WritError ? e.code : 'WRIT_INTERNAL'}: ${(e as Error).message}\n`);
    return exitWhenFlushed(1);
  },
);
