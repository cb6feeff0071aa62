/** Public entry of schemas/: messages, config, names, errors. */
export * from './errors.ts';
export * from './names.ts';
export * from './messages.ts';
export * from './config.ts';
export * from './home.ts';
export * from './canonical.ts';
export * from './grant.ts';
