/** Jest runs TypeScript as native ESM: ts-jest's ESM mode under `node --experimental-vm-modules`. */
export default {
  testEnvironment: '<rootDir>/test/jest-environment.cjs',
  // one temporary directory per run, removed at its end: the tests' files do not pile up in /tmp
  globalSetup: '<rootDir>/test/global-setup.cjs',
  globalTeardown: '<rootDir>/test/global-teardown.cjs',
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.test.json' }],
  },
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  testTimeout: 30000,
};
