/**
 * The rule index: each rule is filed under the literal keys of one dimension (target
 * name, principal sub, principal group, statement kind or program, or, for a denial, the
 * schema of a table it names), the dimension where
 * its keys are rarest, so a lookup touches only rules that could match. Rules with no
 * literal key in any dimension are scanned on every decision.
 */
import type { Principal, TargetConfig } from '../../schemas/index.ts';
import type { CompiledRule, IndexKeys } from './compile.ts';
import type { FactsView } from './view.ts';

const DIMENSIONS = ['target', 'sub', 'group', 'unit', 'table'] as const;
type Dimension = (typeof DIMENSIONS)[number];

export class RuleIndex {
  readonly #buckets: Record<Dimension, Map<string, CompiledRule[]>> = { target: new Map(), sub: new Map(), group: new Map(), unit: new Map(), table: new Map() };
  readonly #scan: CompiledRule[] = [];
  readonly #lists: CompiledRule[][] = [];
  readonly size: number;

  constructor(rules: readonly CompiledRule[], enabled = true) {
    this.size = rules.length;
    if (!enabled) {
      this.#scan.push(...rules);
      return;
    }
    const counts: Record<Dimension, Map<string, number>> = { target: new Map(), sub: new Map(), group: new Map(), unit: new Map(), table: new Map() };
    for (const r of rules) {
      for (const d of DIMENSIONS) for (const k of r.keys[d] ?? []) counts[d].set(k, (counts[d].get(k) ?? 0) + 1);
    }
    for (const r of rules) {
      const d = bestDimension(r.keys, counts);
      if (d === null) {
        this.#scan.push(r);
        continue;
      }
      for (const k of new Set(r.keys[d])) {
        const b = this.#buckets[d].get(k);
        if (b) b.push(r);
        else this.#buckets[d].set(k, [r]);
      }
    }
  }

  /** Rules that could match, in document order, each once. */
  candidates(p: Principal, t: TargetConfig, view: FactsView): readonly CompiledRule[] {
    // A scratch list reused across calls: decisions are synchronous, so no two overlap.
    const lists = this.#lists;
    lists.length = 0;
    const b = this.#buckets;
    let l = b.target.get(t.name);
    if (l) lists.push(l);
    if (b.sub.size > 0 && (l = b.sub.get(p.sub))) lists.push(l);
    if (b.group.size > 0) for (const g of p.groups) if ((l = b.group.get(g))) lists.push(l);
    if (b.unit.size > 0) for (const k of view.keys) if ((l = b.unit.get(k))) lists.push(l);
    if (b.table.size > 0) for (const k of view.tableKeys) if ((l = b.table.get(k))) lists.push(l);
    if (this.#scan.length > 0) lists.push(this.#scan);
    if (lists.length === 0) return [];
    // Buckets are filled in document order, so a single one is already sorted and unique.
    if (lists.length === 1) return lists[0]!;
    const all = ([] as CompiledRule[]).concat(...lists).sort(byOrder);
    lists.length = 0;
    let n = 0;
    for (let i = 0; i < all.length; i++) if (i === 0 || all[i - 1] !== all[i]) all[n++] = all[i]!;
    all.length = n;
    return all;
  }

  /** How many rules the index never scans away (for explain and the benchmark). */
  get scanned(): number {
    return this.#scan.length;
  }
}

const byOrder = (a: CompiledRule, b: CompiledRule): number => a.order - b.order;

function bestDimension(keys: IndexKeys, counts: Record<Dimension, Map<string, number>>): Dimension | null {
  let best: Dimension | null = null;
  let bestCost = Infinity;
  for (const d of DIMENSIONS) {
    const ks = keys[d];
    if (!ks || ks.length === 0) continue;
    // The cost of a dimension: the fullest bucket this rule would share, times how many buckets it enters.
    let worst = 0;
    for (const k of ks) worst = Math.max(worst, counts[d].get(k) ?? 0);
    const cost = worst * Math.max(1, ks.length / 4);
    if (cost < bestCost) {
      best = d;
      bestCost = cost;
    }
  }
  return best;
}
