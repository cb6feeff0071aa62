import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { exportSchemas } from './export.ts';

describe('JSON Schema export', () => {
  it('writes a schema per message that describes the intent an agent must send', () => {
    const dir = mkdtempSync(join(tmpdir(), 'writ-schemas-'));
    const files = exportSchemas(dir);
    expect(files.length).toBeGreaterThanOrEqual(10);
    const intent = JSON.parse(readFileSync(join(dir, 'intent.schema.json'), 'utf8'));
    expect(intent.type).toBe('object');
    expect(intent.required).toEqual(expect.arrayContaining(['v', 'type', 'id', 'sessionId', 'target', 'command', 'token', 'submittedAt']));
    expect(intent.additionalProperties).toBe(false);
    expect(JSON.stringify(intent.properties.command)).toContain('"sql"');
  });
});
