// Lint: typescript-eslint's recommended rules, RxJS rules (no nested subscribe, no unsafe
// takeUntil...), and the layer rule of the design: only src/sources and src/sinks touch
// sockets, files, HTTP and file watching.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import rxjsX from 'eslint-plugin-rxjs-x';
import globals from 'globals';

const sideEffects = ['node:net', 'node:fs', 'node:fs/promises', 'node:http', 'node:child_process', 'chokidar'];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.run/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['src/**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    plugins: { 'rxjs-x': rxjsX },
    rules: {
      ...rxjsX.configs.recommended.rules,
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-imports': [
        'error',
        {
          paths: sideEffects.map((name) => ({
            name,
            message: 'side effects live in src/sources (in) and src/sinks (out)',
            allowTypeImports: true,
          })),
        },
      ],
    },
  },
  {
    // the layers allowed to touch the world, and the CLI/config modules that only use pure helpers of node:net (isIP)
    files: ['src/sources/**/*.ts', 'src/sinks/**/*.ts'],
    rules: { 'no-restricted-imports': 'off' },
  },
  {
    files: ['src/cli.ts', 'src/config/load.ts', 'src/config/address.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { paths: sideEffects.filter((n) => n !== 'node:net').map((name) => ({ name, message: 'side effects live in src/sources and src/sinks' })) },
      ],
    },
  },
  {
    files: ['test/**/*.ts', 'scripts/**/*.mjs', 'bin/**/*.js', 'eslint.config.js'],
    languageOptions: { globals: globals.node },
    rules: { '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }] },
  },
);
