import { describe, expect, it } from 'vitest';
import { escapeForTerminal } from './terminal.ts';

describe('escapeForTerminal neutralises what could redraw a terminal or reorder text', () => {
  it('makes escape sequences, C1 controls and bidi overrides visible', () => {
    const s = escapeForTerminal('BROKEN:\x1b[2K\rOK: \x1b]0;title\x07 \u009b31m rm \u202Efdp.exe\u202C');
    expect(s).not.toMatch(/[\x1b\r\x07\u009b\u202e\u202c]/);
    expect(s).toContain('\\u001b[2K');
    expect(s).toContain('\\u202e');
  });

  it('keeps newlines, tabs and ordinary text, and keeps JSON valid', () => {
    expect(escapeForTerminal('a\tb\nc — ünïcode ✓')).toBe('a\tb\nc — ünïcode ✓');
    const json = JSON.stringify({ v: 'x\u202Ey\u0085' });
    expect(JSON.parse(escapeForTerminal(json))).toEqual({ v: 'x\u202Ey\u0085' });
  });
});
