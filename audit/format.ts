/**
 * Human-readable lines for `writ audit replay` and `tail`: time, actor, type and the
 * payload fields an auditor looks for first. Everything printed passes through `clean`:
 * command texts and error messages are agent-controlled, and a raw escape sequence would
 * rewrite the auditor's terminal.
 */
import type { AuditEvent } from '../schemas/index.ts';
import type { SessionSummary } from './types.ts';

const MAX_TEXT = 400;

/** Control characters (C0, DEL, C1, line/paragraph separators) shown escaped; long texts cut. */
export function clean(s: string, max = MAX_TEXT): string {
  const safe = s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => (c === '\n' ? '⏎' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
  return safe.length > max ? `${safe.slice(0, max)}…(${safe.length - max} more)` : safe;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : undefined);
const obj = (v: unknown): Record<string, unknown> => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
const list = (v: unknown): string => (Array.isArray(v) ? `[${v.map((x) => str(x) ?? '?').join(', ')}]` : '[]');
const short = (hex: unknown): string => (typeof hex === 'string' ? `${hex.slice(0, 12)}…` : '?');

/** The key fields of an event's payload, as `k=v` text. */
function describe(ev: AuditEvent): string {
  if (ev.payload === undefined) return ev.digest ? `payload stored as digest sha256:${short(ev.digest)}` : '';
  const p = ev.payload;
  const parts: string[] = [];
  const add = (k: string, v: string | undefined) => {
    if (v !== undefined && v !== '') parts.push(`${k}=${v}`);
  };
  switch (ev.type) {
    case 'intent.received': {
      const cmd = obj(p['command']);
      add('principal', str(obj(p['principal'])['sub']));
      add('actFor', str(obj(p['principal'])['actFor']));
      add('target', str(p['target']));
      add(str(cmd['kind']) ?? 'command', JSON.stringify(str(cmd['sql']) ?? str(cmd['command']) ?? ''));
      add('justification', str(p['justification']) ? JSON.stringify(p['justification']) : undefined);
      break;
    }
    case 'intent.decided': {
      const d = obj(p['decision']);
      add('effect', str(d['effect'] ?? p['effect']));
      add('rules', list(d['rules'] ?? p['rules']));
      add('mode', str(d['mode']));
      if (Array.isArray(d['reasons']) && d['reasons'].length) add('reasons', JSON.stringify(d['reasons'].join('; ')));
      break;
    }
    case 'exec.finished': {
      add('status', str(p['status']));
      add('rows', str(p['rowCount']));
      add('truncated', p['truncated'] === true ? 'yes' : undefined);
      add('exit', str(p['exitCode']));
      add('result', p['resultSha256'] ? `sha256:${short(p['resultSha256'])}` : undefined);
      add('masked', Array.isArray(p['maskedFields']) ? list(p['maskedFields']) : undefined);
      add('error', str(obj(p['error'])['code']));
      add('ms', str(p['ms']));
      break;
    }
    case 'checkpoint':
      add('heads', String(Array.isArray(p['heads']) ? p['heads'].length : 0));
      add('key', str(p['keyId']));
      add('prev', short(p['prevCheckpoint']));
      break;
    default:
      // Scalars and string lists as they are; nested objects by their error code or key count.
      for (const [k, v] of Object.entries(p)) {
        if (k === 'principal') add(k, str(obj(v)['sub']));
        else if (k === 'error') add(k, str(obj(v)['code']));
        else if (Array.isArray(v)) add(k, list(v));
        else if (v !== null && typeof v === 'object') add(k, `{${Object.keys(v).length} fields}`);
        else add(k, k === 'message' || k === 'reason' ? JSON.stringify(str(v)) : str(v));
      }
  }
  return parts.join(' ');
}

/** One timeline line. */
export function formatEvent(ev: AuditEvent, opts: { session?: boolean; seq?: number } = {}): string {
  const cols = [
    new Date(ev.at).toISOString(),
    ...(opts.seq !== undefined ? [`#${opts.seq}`] : []),
    ...(opts.session ? [ev.sessionId] : []),
    `${ev.actor.kind}:${ev.actor.id}`.padEnd(16),
    ev.type.padEnd(18),
    ...(ev.intentId ? [`[${ev.intentId}]`] : []),
    describe(ev),
  ];
  return clean(cols.join('  ').trimEnd(), 4 * MAX_TEXT);
}

export function formatSessions(rows: SessionSummary[]): string {
  const head = ['SESSION', 'FIRST', 'LAST', 'EVENTS', 'INTENTS', 'PRINCIPAL', 'TARGET', 'OUTCOME'];
  const lines = rows.map((r) =>
    [
      r.sessionId,
      new Date(r.firstAt).toISOString(),
      new Date(r.lastAt).toISOString(),
      String(r.events),
      String(r.intents),
      r.principals.join(',') || '-',
      r.targets.join(',') || '-',
      r.outcome ?? '-',
    ].map((c) => clean(c, 80)),
  );
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  return [head, ...lines]
    .map((l) =>
      l
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
