/**
 * Random text never makes a classifier throw: whatever comes in, the answer
 * is facts, and facts with no statements or commands always carry an error.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { classifyMysql, classifyShell, classifySql, initClassifiers } from './index.ts';

beforeAll(async () => {
  await initClassifiers();
});

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const PIECES = [
  'SELECT',
  ' ',
  'FROM',
  't',
  'WHERE',
  '1=1',
  ';',
  "'",
  '"',
  '$$',
  '$a$',
  '--',
  '/*',
  '*/',
  '\\',
  '(',
  ')',
  ',',
  'E',
  'U&',
  '`',
  '$(',
  '${',
  '}',
  '|',
  '&',
  '&&',
  '>',
  '<<',
  'EOF',
  '\n',
  'sudo',
  'sh -c',
  'rm',
  '-rf',
  '#',
  '!',
  '*',
  'é',
  '😀',
  'WITH x AS',
  'DELETE',
  'INSERT INTO',
  'VALUES',
  'EXPLAIN ANALYZE',
  'COPY',
  'TO PROGRAM',
  '::',
  '[',
  ']',
  '{',
  '=',
  '%',
  '@',
];

function randomText(next: () => number): string {
  return Array.from({ length: Math.floor(next() * 25) }, () => PIECES[Math.floor(next() * PIECES.length)]).join(next() < 0.5 ? '' : ' ');
}

describe('random input', () => {
  it('never throws and never returns empty facts without an error', () => {
    const next = rng(7);
    for (let i = 0; i < 1500; i++) {
      const text = randomText(next);
      const pg = classifySql(text);
      if (pg.statements.length === 0) expect(pg.error, text).toBeDefined();
      const my = classifyMysql(text);
      if (my.statements.length === 0) expect(my.error, text).toBeDefined();
      const sh = classifyShell(text);
      if (sh.commands.length === 0 && sh.redirections.length === 0 && (sh.assignments ?? []).length === 0 && sh.structure.length === 0) {
        expect(sh.error, text).toBeDefined();
      }
    }
  });
});
