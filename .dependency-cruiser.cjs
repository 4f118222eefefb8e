/**
 * berth's import rules: imports point down, never in a circle.
 *   boot → main → rpc → services (projects, agents, sessions, images, health) / reconcile
 *        → ports and adapters (runtime, checkouts, events, config) → store → shared
 * The SDK never imports the daemon; the daemon imports only the SDK's protocol.
 * `npm run check:deps` runs these; test/architecture.test.ts runs them in the suite.
 */
const D = '^daemon/src/';
const ABOVE_ADAPTERS = `${D}(projects|agents|sessions|images|health|reconcile|rpc|main|boot)`;

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', comment: 'A cycle makes both ends one module in disguise.', from: {}, to: { circular: true } },
    {
      name: 'shared-is-lowest',
      severity: 'error',
      comment: 'shared/ holds primitives (clock, names, mutex, the spec type) everyone may use; it uses nothing of the daemon.',
      from: { path: `${D}shared/` },
      to: { path: D, pathNot: `${D}shared/` },
    },
    {
      name: 'store-imports-no-service',
      severity: 'error',
      comment: 'The store keeps rows, specs as opaque data; it knows no service, adapter or reconciler.',
      from: { path: `${D}store/` },
      to: { path: D, pathNot: [`${D}store/`, `${D}shared/`] },
    },
    {
      name: 'adapters-import-nothing-above',
      severity: 'error',
      comment: 'Ports and adapters (runtime, checkouts, events, config, log) are used by services, never the other way.',
      from: { path: `${D}(runtime|checkouts|events|config|log\\.ts)` },
      to: { path: [ABOVE_ADAPTERS, `${D}store/`] },
    },
    {
      name: 'services-import-no-rpc-or-root',
      severity: 'error',
      from: { path: `${D}(projects|agents|sessions|images|health)/` },
      to: { path: `${D}(rpc/|main\\.ts|boot\\.ts)` },
    },
    {
      name: 'services-never-import-the-reconciler',
      severity: 'error',
      comment: 'Services change desired state and ask for a pass through a port (SessionScheduler); the reconciler drives them.',
      from: { path: `${D}(projects|agents|sessions|images|health)/` },
      to: { path: `${D}reconcile/` },
    },
    {
      name: 'reconciler-imports-no-service-or-rpc',
      severity: 'error',
      comment: 'The reconciler may use the session spec builders and secrets, never a service or the RPC layer.',
      from: { path: `${D}reconcile/` },
      to: { path: [`${D}(rpc/|main\\.ts|boot\\.ts|projects/|agents/|images/)`, `${D}sessions/(service|checkouts)\\.ts`] },
    },
    {
      name: 'only-the-root-imports-rpc',
      severity: 'error',
      from: { path: D, pathNot: `${D}(rpc/|main\\.ts|boot\\.ts)` },
      to: { path: `${D}rpc/` },
    },
    {
      name: 'only-boot-imports-main',
      severity: 'error',
      from: { path: D, pathNot: `${D}(boot|main)\\.ts` },
      to: { path: `${D}main\\.ts` },
    },
    {
      name: 'sdk-never-imports-the-daemon',
      severity: 'error',
      from: { path: '^client-sdk/' },
      to: { path: '^daemon/' },
    },
    {
      name: 'daemon-uses-only-the-protocol',
      severity: 'error',
      comment: "berthd shares the SDK's contract (methods, errors, types), not its client or CLI.",
      from: { path: '^daemon/' },
      to: { path: '^client-sdk/', pathNot: '^client-sdk/(src|dist)/protocol/' },
    },
    {
      name: 'sdk-has-nothing-of-the-cli',
      severity: 'error',
      comment: 'An editor plugin imports the SDK: commander, cli-progress and the CLI modules are the CLI\'s own (optional dependencies).',
      from: { path: '^client-sdk/src/', pathNot: '^client-sdk/src/cli/' },
      to: { path: ['^client-sdk/src/cli/', 'node_modules/(commander|cli-progress)/'] },
    },
    {
      name: 'protocol-has-no-runtime-imports',
      severity: 'error',
      comment: 'The protocol is types and constants; a client in any runtime can take it.',
      from: { path: '^client-sdk/src/protocol/' },
      to: { pathNot: '^client-sdk/src/protocol/' },
    },
    {
      name: 'every-import-resolves',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: ['node_modules', '^client-sdk/dist/'] },
    exclude: { path: ['\\.test\\.ts$', '/dist/', '^daemon/test/'] },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'] },
  },
};
