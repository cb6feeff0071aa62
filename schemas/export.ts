/**
 * `npm run schemas`: writes JSON Schema files for the wire messages (zod v4's
 * z.toJSONSchema), so agents in other languages can build intents and read outcomes.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import {
  ApiReplySchema,
  ApiRequestSchema,
  ApprovalDecisionSchema,
  ApprovalOutcomeSchema,
  ApprovalRequestSchema,
  AuditBlockSchema,
  AuditEventSchema,
  DispatchReplySchema,
  ErrorReplySchema,
  GrantClaimsSchema,
  IntentReceiptSchema,
  IntentSchema,
  OrderSchema,
  OutcomeSchema,
} from './messages.ts';
import { ConfigSchema } from './config.ts';

export const EXPORTED: Record<string, z.ZodType> = {
  intent: IntentSchema,
  'intent-receipt': IntentReceiptSchema,
  outcome: OutcomeSchema,
  'error-reply': ErrorReplySchema,
  'api-request': ApiRequestSchema,
  'api-reply': ApiReplySchema,
  'grant-claims': GrantClaimsSchema,
  order: OrderSchema,
  'dispatch-reply': DispatchReplySchema,
  'approval-request': ApprovalRequestSchema,
  'approval-decision': ApprovalDecisionSchema,
  'approval-outcome': ApprovalOutcomeSchema,
  'audit-event': AuditEventSchema,
  'audit-block': AuditBlockSchema,
  config: ConfigSchema,
};

export function exportSchemas(dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  for (const [name, schema] of Object.entries(EXPORTED)) {
    // Inputs: what a sender must produce (defaults may be omitted); unrepresentable parts become `{}`.
    const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' });
    const file = join(dir, `${name}.schema.json`);
    writeFileSync(file, `${JSON.stringify({ $id: `https://writ.dev/schemas/${name}.json`, title: name, ...json }, null, 2)}\n`);
    written.push(file);
  }
  return written;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const dir = resolve(process.argv[2] ?? 'schemas/json');
  for (const f of exportSchemas(dir)) process.stdout.write(`${f}\n`);
}
