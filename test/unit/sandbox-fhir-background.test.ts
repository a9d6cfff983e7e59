/** The sandbox's FHIR engine: without any request, the types not indexed at start are indexed soon after (fhir-data.ts). */
import { isDataTypeLoaded } from '@medplum/core';
import { createFhirEngine } from '../../src/sandbox/fhir-data.js';

test('without a request, the background indexes every resource type soon after start', async () => {
  await createFhirEngine();
  expect(isDataTypeLoaded('Specimen')).toBe(false);
  for (let i = 0; i < 100 && !isDataTypeLoaded('Specimen'); i++) await new Promise((r) => setTimeout(r, 50));
  expect(isDataTypeLoaded('Specimen')).toBe(true);
  expect(isDataTypeLoaded('AllergyIntolerance')).toBe(true);
});
