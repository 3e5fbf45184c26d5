// ESLint flat config: typescript-eslint with type information, so that
// no-floating-promises catches a forgotten await (a lost Redis write or an unhandled
// rejection in a reconcile loop is the bug class we care most about), and the layers of
// the tree (README, "Architecture") as import rules, so that a wrong import fails
// `npm test`.
import comments from '@eslint-community/eslint-plugin-eslint-comments/configs';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * Which top-level folders each layer may import from (relative imports; npm packages are
 * not restricted here). A worker pod carries only worker/, fire/ and common/.
 *
 *   common/        nothing of ours: the contracts both processes share
 *   worker/        common/
 *   fire/          common/ (the FIRE library: data, metrics, reports and their CLI)
 *   orchestrator/  common/ and fire/
 *   testing/       test support (the simulated cluster): the product and itself
 *   test/, bench/  anything but each other (bench may use testing/)
 *   dashboard/     a browser page: the API's types from orchestrator/ (type imports
 *                  only: no Node code can reach the page's bundle)
 *
 * The check is on path segments: an import whose path has a segment naming a folder the
 * layer may not use (`../orchestrator/store.js`, `../../worker/main.js`) is refused. No
 * layer has a folder of its own with one of these names, so this never refuses an
 * import inside a layer. Written with ESLint's own rules (no-restricted-imports for
 * static imports, no-restricted-syntax for import() and import types) rather than an
 * import plugin: those resolve modules and stay silent on an import they cannot resolve,
 * which is the failure a boundary rule must not have.
 */
const LAYERS = {
  common: [],
  worker: ['common'],
  fire: ['common'],
  orchestrator: ['common', 'fire'],
  testing: ['common', 'fire', 'orchestrator', 'worker'],
  bench: ['common', 'fire', 'orchestrator', 'worker', 'testing'],
  test: ['common', 'fire', 'orchestrator', 'worker', 'testing'],
  dashboard: [],
};
const TOP = Object.keys(LAYERS);

function layerRules(layer) {
  const forbidden = TOP.filter((d) => d !== layer && !LAYERS[layer].includes(d));
  const segment = `(^|/)(${forbidden.join('|')})(/|$)`;
  const message = `${layer}/ may import only ${LAYERS[layer].length ? LAYERS[layer].map((d) => `${d}/`).join(', ') : 'itself'} (README, "Architecture": the layers)`;
  const relative = `^\\.{1,2}/(.*/)?(${forbidden.join('|')})(/|$)`;
  return {
    files: [`${layer}/**/*.ts`, `${layer}/**/*.mts`, `${layer}/**/*.mjs`, `${layer}/**/*.js`],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ regex: relative, message }] }],
      'no-restricted-syntax': [
        'error',
        {
          selector: `ImportExpression > Literal[value=/${segment.replaceAll('/', '\\/')}/]`,
          message,
        },
        {
          selector: `TSImportType Literal[value=/${segment.replaceAll('/', '\\/')}/]`,
          message,
        },
      ],
    },
  };
}

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', '.stoker/', 'worker/python/', 'scripts/', 'bin/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  ...TOP.map(layerRules),
  {
    files: ['dashboard/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^\\.\\./(common|fire|worker|testing|test|bench)(/|$)',
              message: 'dashboard/ may import only types from orchestrator/',
            },
            {
              regex: '^\\.\\./orchestrator(/|$)',
              allowTypeImports: true,
              message: 'dashboard/ may import only types from orchestrator/ (import type)',
            },
          ],
        },
      ],
      'max-lines': ['error', { max: 400 }],
      'max-lines-per-function': ['error', { max: 80, IIFEs: true }],
    },
  },
  // Units a newcomer can read (README, Development: "Sizes"): files under 400 lines, functions under 80,
  // blank lines and comments counted. A longer one says why where it is, as the
  // directive's description: `/* eslint-disable max-lines -- why */` in the file's
  // header, `// eslint-disable-next-line max-lines-per-function -- why` above the
  // function; a directive without a description is an error. Tests (table-driven, long
  // by nature) are held to the layers, not to these sizes.
  {
    files: ['{common,fire,orchestrator,worker,testing,bench}/**/*.ts'],
    rules: {
      'max-lines': ['error', { max: 400 }],
      'max-lines-per-function': ['error', { max: 80, IIFEs: true }],
    },
  },
  comments.recommended,
  {
    rules: {
      '@eslint-community/eslint-comments/require-description': 'error',
      '@eslint-community/eslint-comments/disable-enable-pair': ['error', { allowWholeFile: true }],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      ...tseslint.configs.disableTypeChecked.languageOptions,
      // Plain Node scripts (fixtures, bench payloads): Node's globals.
      globals: Object.fromEntries(
        [
          'process',
          'console',
          'setTimeout',
          'clearTimeout',
          'setInterval',
          'clearInterval',
          'setImmediate',
          'Buffer',
          'URL',
          'fetch',
          'TextDecoder',
          'AbortController',
        ].map((g) => [g, 'readonly']),
      ),
    },
  },
);
