// ESLint (flat config): typescript-eslint's recommended rules on the sources,
// tests and benchmarks. Formatting is prettier's (see .prettierrc.json).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.tap/', 'coverage/', 'test/fixtures/', 'bench/results/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'module',
      globals: { console: 'readonly', process: 'readonly', Buffer: 'readonly' },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
      '@typescript-eslint/no-non-null-assertion': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  // The bin's launcher is a CommonJS module on purpose (it runs the bundle in a vm.Script).
  { files: ['cli/sheepdog.cts'], rules: { '@typescript-eslint/no-require-imports': 'off' } },
);
