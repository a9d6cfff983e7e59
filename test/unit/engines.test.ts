/**
 * `engines.node` names the Node LTS lines we test (20, 22, 24), so Heroku (which installs the newest version
 * that satisfies it) and App Engine never pick an untested major, and each line's lowest version satisfies what
 * every runtime dependency declares. app.yaml's runtime is one of those lines.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import semver from 'semver';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { engines: { node: string } };
const lock = JSON.parse(readFileSync(`${ROOT}package-lock.json`, 'utf8')) as { packages: Record<string, { dev?: boolean; devOptional?: boolean; engines?: { node?: string } | string[] }> };
const range = new semver.Range(pkg.engines.node);
/** The lowest version of each line the range allows. */
const minimums = range.set.map((comparators) => semver.minVersion(new semver.Range(comparators.map((c) => c.value).join(' ')))!.version);

describe('engines.node', () => {
  test('names exactly the LTS lines 20, 22 and 24, no open-ended upper bound', () => {
    expect(minimums.map((v) => semver.major(v))).toEqual([20, 22, 24]);
    expect(semver.satisfies('25.0.0', range)).toBe(false);
    expect(semver.satisfies('26.0.0', range)).toBe(false);
    expect(semver.satisfies('21.7.0', range)).toBe(false);
    expect(lock.packages['']!.engines).toEqual(pkg.engines);
  });

  test("each line's lowest version satisfies every runtime dependency's own engines.node", () => {
    const runtime = Object.entries(lock.packages).filter(([path, p]) => path && !p.dev && !p.devOptional && p.engines && !Array.isArray(p.engines) && p.engines.node);
    expect(runtime.length).toBeGreaterThan(10);
    const misfits = runtime.flatMap(([path, p]) => {
      const need = (p.engines as { node: string }).node;
      return minimums.filter((v) => !semver.satisfies(v, need, { includePrerelease: true })).map((v) => `${path.replace(/^.*node_modules\//, '')} needs node ${need}, not ${v}`);
    });
    expect(misfits).toEqual([]);
  });

  test('the Node running these tests is one engines.node allows', () => {
    expect(semver.satisfies(process.versions.node, range)).toBe(true);
  });

  test("app.yaml's runtime is one of those lines", () => {
    const runtime = /^runtime:\s*nodejs(\d+)\s*$/m.exec(readFileSync(`${ROOT}app.yaml`, 'utf8'))?.[1];
    expect(minimums.map((v) => String(semver.major(v)))).toContain(runtime);
  });
});
