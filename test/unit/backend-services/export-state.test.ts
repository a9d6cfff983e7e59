/** Resume only the same request: what counts as the same, and what is reported as different. */
import { requestDifferences, type ExportParameters } from '../../../src/backend-services/export-state.js';

const base = 'https://fhir.example.org/r4';
const req = (parameters: ExportParameters, over: { fhirBaseUrl?: string; clientId?: string } = {}) => ({ fhirBaseUrl: base, clientId: 'c1', parameters, ...over });

test('the same request written differently is the same: type order, trailing slash, ndjson aliases, the same instant', () => {
  expect(requestDifferences(
    req({ level: 'system', types: ['Patient', 'Observation'], since: '2026-01-01T00:00:00Z', outputFormat: 'ndjson' }),
    req({ level: 'system', types: ['Observation', 'Patient'], since: '2026-01-01T01:00:00+01:00', outputFormat: 'application/fhir+ndjson' }, { fhirBaseUrl: `${base}/` }),
  )).toEqual([]);
});

test('every part of the request counts: base, client, level, group, types, since, type filters, output format', () => {
  const a = req({ level: 'group', groupId: 'g1', types: ['Patient'], since: '2026-01-01T00:00:00Z', typeFilters: ['Patient?active=true'] });
  const b = req({ level: 'group', groupId: 'g2', types: ['Patient', 'Condition'], typeFilters: [], outputFormat: 'application/x-other' }, { fhirBaseUrl: 'https://other.example.org/r4', clientId: 'c2' });
  expect(requestDifferences(a, b)).toEqual([
    'FHIR base: https://fhir.example.org/r4 → https://other.example.org/r4',
    'client id: c1 → c2',
    'group: g1 → g2',
    'types: Patient → Condition,Patient',
    'since: 2026-01-01T00:00:00.000Z → (none)',
    'type filters: Patient?active=true → (none)',
    'output format: application/fhir+ndjson → application/x-other',
  ]);
  expect(requestDifferences(req({ level: 'system' }), req({ level: 'patient' }))).toEqual(['level: system → patient']);
});
