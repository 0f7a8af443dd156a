import { readFileSync } from 'node:fs';

/** The package version, read from package.json two folders up from src/core/ and dist/core/. */
export const VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
