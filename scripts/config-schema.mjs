// npm run schema: writes config/gatehouse.schema.json from the loader's schema (see src/config/json-schema.ts).
import { writeFileSync } from 'node:fs';
import { renderConfigJsonSchema } from '../dist/config/json-schema.js';

const target = new URL('../config/gatehouse.schema.json', import.meta.url);
writeFileSync(target, renderConfigJsonSchema());
process.stdout.write('wrote config/gatehouse.schema.json\n');
