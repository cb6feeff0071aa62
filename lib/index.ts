/** Public entry of lib/: the runtime pieces every service shares (logging, consume loop, NATS connect). */
export * from './log.ts';
export * from './consume.ts';
export * from './nats.ts';
export * from './reply.ts';
export * from './process.ts';
export * from './retry.ts';
export * from './terminal.ts';
export * from './local.ts';
