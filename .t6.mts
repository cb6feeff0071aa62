import { benchDecisions } from './bench/decisions.ts';
await benchDecisions({ ms: 1500 });
