import { readFileSync } from 'node:fs';
import { packageFile } from './layout.ts';

/** Portico's version, from package.json. */
export const VERSION: string = (JSON.parse(readFileSync(packageFile('package.json'), 'utf8')) as { version: string }).version;
