/**
 * The body records, now one module per family under records/; this path stays
 * importable for existing importers.
 */
export * from './records/index.js';
