/**
 * The Writ MCP server: the agent's own WritClient behind seven tools an LLM planner can
 * drive. Every tool is a thin mapping onto the agent API; policy, masking and audit stay
 * in the broker and the workers.
 */
import { McpServer, ProtocolError, ProtocolErrorCode, type CallToolResult, type ServerContext, type ToolAnnotations } from '@modelcontextprotocol/server';
import { z } from 'zod';
import { TERMINAL_STATES, WritError, type IntentState } from '../../schemas/index.ts';
import { newId, type WritClient } from '../../client/sdk.ts';
import { runIdempotent, waitLong } from '../../client/sdk-extras.ts';
import { approvalShown } from './format.ts';
import { errorView, explainText, explainView, intentResult, intentText, intentView, openView, targetsText, targetsView, toolResult } from './format.ts';
import { ExplainInput, ExplainOut, IntentIdInput, IntentOut, ListTargetsInput, MAX_WAIT_SECONDS, ShellCommandInput, SqlQueryInput, TargetsOut, WaitInput } from './schemas.ts';

export interface WritMcpServerOptions {
  /** The agent's client; every tool acts with its token and, unless told otherwise, its session. */
  client: WritClient;
  /** Name the server reports to MCP clients; default `writ`. */
  name?: string;
  /** Version it reports; default `0.1.0`. */
  version?: string;
  /** How often wait_for_intent sends progress while it waits, when the caller sent a progress token; default 10 s. */
  progressIntervalMs?: number;
}

interface ToolDef<S extends z.ZodType> {
  title: string;
  description: string;
  input: S;
  output: z.ZodType;
  annotations: ToolAnnotations;
  run(args: z.output<S>, ctx: ServerContext): Promise<CallToolResult>;
}

/** Default time between progress notifications during a long wait. */
const PROGRESS_EVERY_MS = 10_000;

const INSTRUCTIONS = `Writ brokers privileged access to databases and hosts. Nothing here connects to a target directly: each command is checked against policy, may need a human's approval, runs with credentials you never see, and comes back masked. Everything is audited.
Start with list_targets. Use explain to check a command before running it, especially writes. sql_query and shell_command return the result, or outcome pending_approval with an intent_id (then wait_for_intent), or a denial with the rule, the reasons and an error code. Read "next" in every result. Never retry a denial unchanged, never try to unmask masked values, and pass a justification whenever approval may be needed.`;

/** Builds the MCP server; connect it to a transport, or hand `() => createWritMcpServer(o)` to a serving entry. */
export function createWritMcpServer(o: WritMcpServerOptions): McpServer {
  const mcp = new McpServer({ name: o.name ?? 'writ', version: o.version ?? '0.1.0' }, { instructions: INSTRUCTIONS });
  const defs = new Map<string, ToolDef<z.ZodType>>();
  const add = <S extends z.ZodType>(name: string, def: ToolDef<S>) => {
    defs.set(name, def as unknown as ToolDef<z.ZodType>);
    // Listed by the SDK; called through takeOverToolCalls, which validates first.
    const inputSchema: z.ZodType = def.input;
    mcp.registerTool(name, { title: def.title, description: def.description, inputSchema, outputSchema: def.output, annotations: def.annotations }, (args: unknown, ctx: ServerContext) =>
      def.run(args as z.output<S>, ctx),
    );
  };
  registerTools(o.client, add, o.progressIntervalMs ?? PROGRESS_EVERY_MS);
  takeOverToolCalls(mcp, defs);
  return mcp;
}

/**
 * Invalid arguments come back as a tool result with `isError` and the reason (WRIT_BAD_REQUEST),
 * as the MCP specification asks: many hosts never show the model a JSON-RPC error, so a
 * protocol error (-32602) left it retrying blind. Only an unknown tool stays a protocol error.
 * The structured part is given only where it fits the tool's output schema (IntentOut), since
 * clients validate it against that schema. Listing stays the SDK's.
 */
function takeOverToolCalls(mcp: McpServer, defs: ReadonlyMap<string, ToolDef<z.ZodType>>): void {
  mcp.server.removeRequestHandler('tools/call');
  mcp.server.setRequestHandler('tools/call', async (request, ctx) => {
    const name = request.params.name;
    const def = defs.get(name);
    if (!def) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Tool ${name} not found`);
    const failed = (v: IntentOut): CallToolResult => (def.output === IntentOut ? intentResult(v) : { content: [{ type: 'text', text: intentText(v) }], isError: true });
    const parsed = def.input.safeParse(request.params.arguments ?? {});
    if (!parsed.success) {
      const v = errorView(new WritError('WRIT_BAD_REQUEST', `invalid arguments for ${name}:\n${z.prettifyError(parsed.error)}`));
      return mcp.server.projectCallToolResult(failed({ ...v, next: BAD_ARGUMENTS_NEXT }), undefined);
    }
    let result: CallToolResult;
    try {
      result = await def.run(parsed.data, ctx);
    } catch (e) {
      if (ctx.mcpReq.signal.aborted) throw e;
      result = failed(errorView(e));
    }
    return mcp.server.projectCallToolResult(result, undefined);
  });
}

const BAD_ARGUMENTS_NEXT = "Nothing was submitted. Fix the arguments as the tool's input schema says (names, types, exactly one of sql or command where asked) and call it again.";

type Add = <S extends z.ZodType>(name: string, def: ToolDef<S>) => void;

function registerTools(client: WritClient, add: Add, progressEveryMs: number): void {
  add('list_targets', {
    title: 'List Writ targets',
    description:
      'The targets (databases, hosts) this agent may use through Writ, and for what: each access entry names the policy rule and whether it allows read or write access, needs approval, or denies. Call this first to learn the target names.',
    input: ListTargetsInput,
    output: TargetsOut,
    annotations: { readOnlyHint: true, openWorldHint: false },
    async run() {
      const v = targetsView(await client.targets());
      return toolResult(v, targetsText(v));
    },
  });

  add('explain', {
    title: 'Explain a Writ decision',
    description:
      'Asks whether a SQL statement or shell command would be allowed on a target, and why, without running it. Returns allowed, the effect (allow, deny, require_approval), the deciding rules, the reasons, who would have to approve, and what Writ understood the command to do. Give exactly one of sql or command. Use it before writes and after a denial, to test a variant.',
    input: ExplainInput,
    output: ExplainOut,
    annotations: { readOnlyHint: true, openWorldHint: false },
    async run(a) {
      const kind = a.sql !== undefined ? 'sql' : 'shell';
      try {
        const x = await client.explain({ target: a.target, ...(a.sql !== undefined ? { sql: a.sql } : { command: a.command ?? '' }), ...(a.session_id ? { sessionId: a.session_id } : {}) });
        const v = explainView(a.target, kind, x);
        return toolResult(v, explainText(v));
      } catch (e) {
        return intentResult(errorView(e, { target: a.target }));
      }
    },
  });

  add('sql_query', {
    title: 'Run SQL through Writ',
    description:
      'Runs SQL on a PostgreSQL target through Writ, as this agent. Policy decides before anything runs. You get the masked result (columns with masked: true hold values redacted by policy; truncated: true when a policy limit cut rows), or outcome pending_approval with an intent_id when a human must approve first (then call wait_for_intent; do not resubmit), or a denial (isError) with the deciding rules, the reasons and an error code. Never retry a denial unchanged: read next and the reasons, change the query, or check a variant with explain.',
    input: SqlQueryInput,
    output: IntentOut,
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
    run: (a, ctx) => runIntent(client, { target: a.target, sql: a.sql }, a, ctx),
  });

  add('shell_command', {
    title: 'Run a shell command through Writ',
    description:
      'Runs a shell command on an SSH target through Writ, as this agent. Policy decides before anything runs, from what each program in the command line does. You get the exit code and masked stdout/stderr, or outcome pending_approval with an intent_id when a human must approve first (then call wait_for_intent; do not resubmit), or a denial (isError) with the deciding rules, the reasons and an error code. Never retry a denial unchanged.',
    input: ShellCommandInput,
    output: IntentOut,
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true },
    run: (a, ctx) => runIntent(client, { target: a.target, command: a.command }, a, ctx),
  });

  add('intent_status', {
    title: 'Status of a Writ intent',
    description:
      'The current state of an intent this agent submitted: pending_approval, in_progress, or how it ended. For an intent that ended it includes the outcome (result, or decision and error). Does not wait; use wait_for_intent to wait.',
    input: IntentIdInput,
    output: IntentOut,
    annotations: { readOnlyHint: true, openWorldHint: false },
    async run(a) {
      try {
        const status = await client.status(a.intent_id);
        if (!TERMINAL_STATES.has(status)) return intentResult(openView(a.intent_id, status, undefined, undefined, false), { isError: false });
        return intentResult(intentView(await client.wait(a.intent_id, { timeoutMs: 5_000 })), { isError: false });
      } catch (e) {
        return intentResult(errorView(e, { intentId: a.intent_id }));
      }
    },
  });

  add('wait_for_intent', {
    title: 'Wait for a Writ intent',
    description: `Waits until an intent ends, typically one pending human approval, for up to timeout_seconds (at most ${MAX_WAIT_SECONDS}), and returns its outcome: the masked result, or why it did not run (rejected, expired, cancelled, denied). If it is still open when the time is up you get timedOut: true; call it again. Progress notifications are sent while waiting when you pass a progress token.`,
    input: WaitInput,
    output: IntentOut,
    annotations: { readOnlyHint: true, openWorldHint: false },
    run: (a, ctx) => waitTool(client, a.intent_id, (a.timeout_seconds ?? 60) * 1000, progressEveryMs, ctx),
  });

  add('cancel_intent', {
    title: 'Cancel a pending Writ intent',
    description: 'Withdraws an intent of this agent that is still waiting for approval; it will never run. An intent that is already running or finished cannot be cancelled (error WRIT_NOT_PENDING).',
    input: IntentIdInput,
    output: IntentOut,
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    async run(a) {
      try {
        const status = await client.cancel(a.intent_id);
        return intentResult({ outcome: 'cancelled', status, intentId: a.intent_id, next: 'Cancelled: it will never run.' }, { isError: false });
      } catch (e) {
        return intentResult(errorView(e, { intentId: a.intent_id }));
      }
    },
  });
}

interface RunArgs {
  justification?: string | undefined;
  session_id?: string | undefined;
  intent_id?: string | undefined;
  timeout_seconds?: number | undefined;
}

/** Submits and waits; the intent id is chosen here so a timed-out run can still be followed. */
async function runIntent(client: WritClient, cmd: { target: string; sql?: string; command?: string }, a: RunArgs, ctx: ServerContext): Promise<CallToolResult> {
  const intentId = a.intent_id ?? newId();
  const sessionId = a.session_id ?? client.sessionId;
  try {
    const req = { ...cmd, intentId, sessionId, ...(a.justification ? { justification: a.justification } : {}) };
    const opts = { timeoutMs: (a.timeout_seconds ?? 30) * 1000, signal: ctx.mcpReq.signal };
    // An id of the caller's choosing may have run before: answer with its first outcome.
    const o = a.intent_id ? await runIdempotent(client, req, opts) : await client.run(req, opts);
    // A pending intent: what its approvers see, and what approving it with a window would allow.
    return intentResult(intentView(o, cmd.target), { approval: approvalShown(o) });
  } catch (e) {
    ctx.mcpReq.signal.throwIfAborted();
    if (!(e instanceof WritError && e.code === 'WRIT_TIMEOUT')) return intentResult(errorView(e, { intentId, sessionId, target: cmd.target }));
    const status: IntentState = await client.status(intentId).catch(() => 'received');
    return intentResult(openView(intentId, status, sessionId, cmd.target, true), { isError: false });
  }
}

async function waitTool(client: WritClient, intentId: string, timeoutMs: number, progressEveryMs: number, ctx: ServerContext): Promise<CallToolResult> {
  const token = ctx.mcpReq._meta?.progressToken;
  const onTick =
    token === undefined
      ? undefined
      : async (elapsedMs: number) => {
          await ctx.mcpReq
            .notify({
              method: 'notifications/progress',
              params: { progressToken: token, progress: Math.round(elapsedMs / 1000), total: Math.round(timeoutMs / 1000), message: `intent ${intentId} still open` },
            })
            .catch(() => undefined);
        };
  try {
    const out = await waitLong(client, intentId, { timeoutMs, signal: ctx.mcpReq.signal, ...(onTick ? { sliceMs: progressEveryMs, onTick } : {}) });
    if (out) return intentResult(intentView(out));
    return intentResult(openView(intentId, await client.status(intentId), undefined, undefined, true), { isError: false });
  } catch (e) {
    ctx.mcpReq.signal.throwIfAborted();
    return intentResult(errorView(e, { intentId }));
  }
}
