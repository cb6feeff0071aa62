/**
 * Prints how the classifiers do on the shared corpora (all of them, no
 * sampling): `npx tsx classify/corpus-report.ts`.
 */
import { initClassifiers } from './runtime.ts';
import { isKeyPressExample, readJsonl, readMariadbCorpus, runMysql, runPg, runShell, type CorpusStats, type PgItem, type ShellItem } from './corpus.ts';

const pct = (n: number, d: number) => `${((100 * n) / Math.max(1, d)).toFixed(3)}%`;

function print(title: string, s: CorpusStats): void {
  console.log(`\n== ${title}`);
  console.log(`items:       ${s.total}`);
  console.log(`parsed:      ${s.parsed} (${pct(s.parsed, s.total)})`);
  console.log(`classified:  ${s.classified} (${pct(s.classified, s.total)}) with no error`);
  console.log(`time:        ${s.ms.toFixed(0)} ms, ${(s.ms / Math.max(1, s.total)).toFixed(3)} ms per item`);
  if (s.errors.size) console.log(`errors:      ${[...s.errors].map(([k, v]) => `${k} ${v}`).join(', ')}`);
  if (s.unknown.size) {
    console.log('not classified, by reason:');
    for (const [k, v] of [...s.unknown].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`  ${String(v).padStart(6)}  ${k}`);
  }
  if (s.refused.size) {
    console.log(`refused by design (known kinds, blind or outliving the intent): ${[...s.refused.values()].reduce((a, b) => a + b, 0)}`);
    for (const [k, v] of [...s.refused].sort((a, b) => b[1] - a[1])) console.log(`  ${String(v).padStart(6)}  ${k}`);
  }
  console.log('slowest:');
  for (const t of s.slowest) console.log(`  ${t.ms.toFixed(2).padStart(8)} ms  ${t.label}`);
}

await initClassifiers({ mysql: true });

// MariaDB's own test suite (in the repository: test/corpora/mariadb/).
print('mariadb-test: statements MariaDB 10.11 accepts (sampled)', runMysql(readMariadbCorpus('statements.jsonl')));
const mrej = runMysql(readMariadbCorpus('rejected.jsonl'));
print("mariadb-test: statements MariaDB's parser rejects (ER_PARSE_ERROR)", mrej);
console.log(`failed closed: ${mrej.total - mrej.classified} of ${mrej.total} (${pct(mrej.total - mrej.classified, mrej.total)})`);

const accepted = readJsonl<PgItem>('pg-regress/statements.jsonl');
print('pg-regress: statements PostgreSQL accepts', runPg(accepted));

// The parser rejected these when the corpus was built: every one must fail closed here too.
const rejected = readJsonl<PgItem>('pg-regress/rejected.jsonl');
const r = runPg(rejected);
print('pg-regress: statements the parser rejects (all must carry an error)', r);
console.log(`failed closed: ${r.total - r.classified} of ${r.total} (${pct(r.total - r.classified, r.total)})`);

const commands = readJsonl<ShellItem>('tldr-commands/commands.jsonl');
print('tldr: all examples', runShell(commands));
print('tldr: without key-press examples', runShell(commands.filter((c) => !isKeyPressExample(c.command))));
