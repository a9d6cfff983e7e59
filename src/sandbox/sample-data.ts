/**
 * Sample FHIR R4 data for the sandbox EHR, generated deterministically by this module (no download): a few
 * patients with encounters, conditions, medications and observations, the practitioners who sign in, and a
 * Group of patients for group-level Bulk Data exports.
 */
import type { Resource } from '@medplum/fhirtypes';

export const MRN_SYSTEM = 'urn:oid:2.16.840.1.113883.19.5.99999.1';

const PATIENTS = [
  { id: 'smart-1032702', given: ['Amy', 'V.'], family: 'Shaw', gender: 'female', birthDate: '1987-02-20' },
  { id: 'smart-1098667', given: ['Daniel', 'X.'], family: 'Adams', gender: 'male', birthDate: '1925-12-23' },
  { id: 'smart-1134281', given: ['Susan', 'A.'], family: 'Clark', gender: 'female', birthDate: '2000-04-12' },
  { id: 'smart-1186747', given: ['Joseph', 'P.'], family: 'Nichols', gender: 'male', birthDate: '1972-09-03' },
  { id: 'smart-1213208', given: ['José', 'L.'], family: 'García', gender: 'male', birthDate: '1964-06-30' },
] as const;

/** The resource types the sandbox serves (and exports with Bulk Data). */
export const SANDBOX_RESOURCE_TYPES = ['Patient', 'Practitioner', 'Encounter', 'Condition', 'MedicationRequest', 'Observation', 'Group'] as const;

/** A sample cohort for group-level exports: the first three patients. */
export const SAMPLE_GROUP_ID = 'sandbox-cohort';

export const PRACTITIONERS = [
  { id: 'smart-Practitioner-71482713', given: ['Susan'], family: 'Smart', prefix: 'Dr.' },
  { id: 'smart-Practitioner-72004454', given: ['Ryan'], family: 'Banks', prefix: 'Dr.' },
] as const;

const CONDITIONS = [
  ['44054006', 'Diabetes mellitus type 2'], ['38341003', 'Hypertensive disorder'], ['195967001', 'Asthma'],
  ['55822004', 'Hyperlipidemia'], ['35489007', 'Depressive disorder'], ['40055000', 'Chronic sinusitis'],
] as const;

const MEDICATIONS = [
  ['860975', 'Metformin 500 MG Oral Tablet'], ['314076', 'Lisinopril 10 MG Oral Tablet'], ['895994', 'Albuterol 0.09 MG/ACTUAT Inhaler'],
  ['617312', 'Atorvastatin 10 MG Oral Tablet'], ['312938', 'Sertraline 50 MG Oral Tablet'],
] as const;

const VITALS = [
  { code: '8867-4', display: 'Heart rate', unit: '/min', ucum: '/min', base: 72, spread: 14 },
  { code: '8310-5', display: 'Body temperature', unit: 'Cel', ucum: 'Cel', base: 36.8, spread: 0.8 },
  { code: '29463-7', display: 'Body weight', unit: 'kg', ucum: 'kg', base: 74, spread: 9 },
  { code: '2339-0', display: 'Glucose [Mass/volume] in Blood', unit: 'mg/dL', ucum: 'mg/dL', base: 105, spread: 30 },
  { code: '9279-1', display: 'Respiratory rate', unit: '/min', ucum: '/min', base: 16, spread: 4 },
] as const;

/** A small deterministic PRNG so the data is the same on every run. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

export interface SamplePatient {
  id: string;
  name: string;
}

export function samplePatients(): SamplePatient[] {
  return PATIENTS.map((p) => ({ id: p.id, name: `${p.given[0]} ${p.family}` }));
}

export function sampleResources(): Resource[] {
  const out: Resource[] = [];
  for (const pr of PRACTITIONERS) {
    out.push({ resourceType: 'Practitioner', id: pr.id, active: true, name: [{ prefix: [...pr.prefix.split(' ')], given: [...pr.given], family: pr.family }] });
  }
  PATIENTS.forEach((p, i) => {
    const rand = prng(i + 1);
    const ref = { reference: `Patient/${p.id}`, display: `${p.given[0]} ${p.family}` };
    out.push({
      resourceType: 'Patient', id: p.id, active: true, gender: p.gender, birthDate: p.birthDate,
      name: [{ use: 'official', given: [...p.given], family: p.family }],
      identifier: [{ use: 'usual', type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR' }], text: 'MRN' }, system: MRN_SYSTEM, value: String(100200 + i * 17) }],
      telecom: [{ system: 'phone', value: `555-01${String(10 + i)}`, use: 'home' }],
      generalPractitioner: [{ reference: `Practitioner/${PRACTITIONERS[i % PRACTITIONERS.length]!.id}` }],
    });
    const encounterId = `${p.id}-enc-1`;
    out.push({
      resourceType: 'Encounter', id: encounterId, status: 'in-progress', subject: ref,
      class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB', display: 'ambulatory' },
      period: { start: '2026-11-20T09:00:00Z' },
      participant: [{ individual: { reference: `Practitioner/${PRACTITIONERS[i % PRACTITIONERS.length]!.id}` } }],
    });
    for (let c = 0; c < 3; c++) {
      const [code, display] = CONDITIONS[(i + c) % CONDITIONS.length]!;
      out.push({
        resourceType: 'Condition', id: `${p.id}-cond-${c + 1}`, subject: ref,
        clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }], text: 'Active' },
        category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-category', code: 'problem-list-item' }] }],
        code: { coding: [{ system: 'http://snomed.info/sct', code, display }], text: display },
        onsetDateTime: `${2015 + c}-0${(i % 8) + 1}-15`,
      });
    }
    for (let m = 0; m < 2 + (i % 2); m++) {
      const [code, display] = MEDICATIONS[(i + m) % MEDICATIONS.length]!;
      out.push({
        resourceType: 'MedicationRequest', id: `${p.id}-med-${m + 1}`, status: 'active', intent: 'order', subject: ref,
        medicationCodeableConcept: { coding: [{ system: 'http://www.nlm.nih.gov/research/umls/rxnorm', code, display }], text: display },
        authoredOn: `2026-0${(m % 9) + 1}-0${(i % 9) + 1}`,
        requester: { reference: `Practitioner/${PRACTITIONERS[0]!.id}` },
      });
    }
    const observations = i === 0 ? 40 : 8;
    for (let o = 0; o < observations; o++) {
      const v = VITALS[o % VITALS.length]!;
      const value = Math.round((v.base + (rand() - 0.5) * v.spread) * 10) / 10;
      const day = new Date(Date.UTC(2026, 10, 20) - o * 86400000).toISOString();
      out.push({
        resourceType: 'Observation', id: `${p.id}-obs-${o + 1}`, status: 'final', subject: ref,
        category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: v.code === '2339-0' ? 'laboratory' : 'vital-signs' }] }],
        code: { coding: [{ system: 'http://loinc.org', code: v.code, display: v.display }], text: v.display },
        effectiveDateTime: day,
        valueQuantity: { value, unit: v.unit, system: 'http://unitsofmeasure.org', code: v.ucum },
      });
    }
  });
  out.push({
    resourceType: 'Group', id: SAMPLE_GROUP_ID, active: true, type: 'person', actual: true, name: 'Sandbox cohort (three sample patients)',
    quantity: 3, member: PATIENTS.slice(0, 3).map((p) => ({ entity: { reference: `Patient/${p.id}`, display: `${p.given[0]} ${p.family}` } })),
  });
  return out;
}
