/**
 * Loading: classifying PostgreSQL or shell before initClassifiers() is a
 * programming error and says so (MySQL loads on first use); loading is idempotent and safe to call concurrently. This file
 * runs in its own module graph, so nothing has been loaded when it starts.
 */
import { describe, expect, it } from 'vitest';
import { classifyMysql, classifyShell, classifySql, initClassifiers } from './index.ts';

describe('initClassifiers', () => {
  it('refuses to classify before loading rather than guessing', () => {
    expect(() => classifySql('SELECT 1')).toThrow(expect.objectContaining({ code: 'WRIT_INTERNAL' }));
    expect(() => classifyShell('ls')).toThrow(expect.objectContaining({ code: 'WRIT_INTERNAL' }));
  });

  it('loads the MySQL parser on its first use instead (plain JavaScript, synchronous; lazy-mysql.test.ts)', () => {
    expect(classifyMysql('SELECT 1').statements[0]?.kind).toBe('select');
  });

  it('loads once even when called concurrently, then classifies synchronously', async () => {
    await Promise.all([initClassifiers(), initClassifiers(), initClassifiers()]);
    await initClassifiers();
    expect(classifySql('SELECT 1').statements[0]?.kind).toBe('select');
    expect(classifyShell('ls').commands[0]?.program).toBe('ls');
    expect(classifyMysql('SELECT 1').statements[0]?.kind).toBe('select');
  });
});
