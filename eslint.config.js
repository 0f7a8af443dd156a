import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { defineConfig } from 'eslint/config';

// The floors of docs/architecture.md; test/unit/architecture/layers.test.ts checks the same on the
// whole import graph, cycles included.
const CONCERNS = ['routing', 'resilience', 'security', 'quota', 'webhook', 'delivery', 'cache', 'budget', 'telemetry'];
const SHELL = ['../proxy/*', '../admin/*', '../demo/*', '../gatehouse.js', '../main.js'];
const restrict = (files, patterns) => ({ files, rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns }] } });
const layers = [
  restrict(['src/core/**/*.ts'], [{ group: ['../*'], message: 'core/ is the ground floor: it imports nothing of ours.' }]),
  restrict(['src/config/**/*.ts', 'src/stores/**/*.ts'], [
    { group: ['../*', '!../core', '!../config'], message: 'config/ and stores/ import only config/ and core/.' },
  ]),
  ...CONCERNS.map((concern) =>
    restrict(
      [`src/${concern}/**/*.ts`],
      [
        { group: SHELL, message: 'a concern never imports proxy/, admin/ or the composition root: take what it needs from core/ or as a dependency.' },
        {
          group: CONCERNS.filter((c) => c !== concern).map((c) => `../${c}/*`),
          allowTypeImports: !(concern === 'resilience'),
          message: "a concern uses another concern's types only (telemetry implements their observers); shared code belongs in core/.",
        },
      ],
    ),
  ),
];

export default defineConfig(
  { ignores: ['dist/', 'dist-check/', 'coverage/', 'node_modules/', '.tmp/', 'data/', '**/*.mjs', '**/*.cjs'] },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-properties': ['error', { object: 'Date', property: 'now', message: 'use Clock' }],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      'no-restricted-properties': 'off',
    },
  },
  ...layers,
  { files: ['eslint.config.js', 'vitest.config.ts'], extends: [tseslint.configs.disableTypeChecked] },
);
