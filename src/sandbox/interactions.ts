/**
 * Sign-in and consent for the sandbox's authorization server (plain HTML forms, no script): pick a user, then
 * allow or deny the requested scopes; a standalone launch with `launch/patient` also picks the patient. The
 * launch context is bound to the grant so the token response and the FHIR server know the patient.
 */
import express, { type Router } from 'express';
import type Provider from 'oidc-provider';
import type { LaunchContextStore } from './launch-context.js';
import { OIDC_SCOPES } from './provider.js';
import { PRACTITIONERS, samplePatients } from './sample-data.js';
import { renderConsent, renderLogin, renderSandboxError } from './views.js';

export function interactionRouter(o: { provider: Provider; interactionPath: string; fhirBaseUrl: string; contexts: LaunchContextStore }): Router {
  const router = express.Router();
  const form = express.urlencoded({ extended: false, limit: '16kb' });
  const users = PRACTITIONERS.map((p) => ({ id: p.id, name: `${p.prefix} ${p.given.join(' ')} ${p.family}` }));
  const patients = samplePatients();

  router.use((_req, res, next) => {
    res.set('cache-control', 'no-store');
    next();
  });

  router.get('/:uid', async (req, res) => {
    const details = await o.provider.interactionDetails(req, res);
    const action = `${o.interactionPath}/${details.uid}`;
    const clientId = String(details.params.client_id);
    if (details.prompt.name === 'login') {
      res.type('html').send(renderLogin({ action: `${action}/login`, clientId, users }));
      return;
    }
    const scopes = String(details.params.scope ?? '').split(' ').filter(Boolean);
    const launch = o.contexts.resolveLaunch(details.params.launch as string | undefined);
    const needsPatient = !launch && scopes.includes('launch/patient');
    res.type('html').send(renderConsent({
      action: `${action}/confirm`, clientId, scopes,
      ...(needsPatient ? { patients } : {}),
      ...(launch?.patient ? { launchPatient: launch.patient } : {}),
    }));
  });

  router.post('/:uid/login', form, async (req, res) => {
    const details = await o.provider.interactionDetails(req, res);
    const user = String((req.body as Record<string, unknown>).user ?? '');
    if (details.prompt.name !== 'login' || !users.some((u) => u.id === user)) {
      res.status(400).type('html').send(renderSandboxError('invalid_request', 'Choose a user to sign in.'));
      return;
    }
    await o.provider.interactionFinished(req, res, { login: { accountId: user } }, { mergeWithLastSubmission: false });
  });

  router.post('/:uid/confirm', form, async (req, res) => {
    const details = await o.provider.interactionDetails(req, res);
    const body = req.body as Record<string, unknown>;
    if (details.prompt.name !== 'consent') {
      res.status(400).type('html').send(renderSandboxError('invalid_request', 'Unexpected step.'));
      return;
    }
    if (body.action !== 'allow') {
      await o.provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'The user denied access.' }, { mergeWithLastSubmission: false });
      return;
    }
    const { params, session } = details;
    const scopes = String(params.scope ?? '').split(' ').filter(Boolean);
    const launch = o.contexts.resolveLaunch(params.launch as string | undefined);
    let patient = launch?.patient;
    if (!launch && scopes.includes('launch/patient')) {
      patient = String(body.patient ?? '');
      if (!patients.some((p) => p.id === patient)) {
        res.status(400).type('html').send(renderSandboxError('invalid_request', 'Choose a patient.'));
        return;
      }
    }
    const grant = new o.provider.Grant({ accountId: session!.accountId, clientId: String(params.client_id) });
    grant.addOIDCScope(scopes.filter((s) => OIDC_SCOPES.includes(s)).join(' '));
    grant.addResourceScope(o.fhirBaseUrl, scopes.join(' '));
    const grantId = await grant.save();
    o.contexts.bindGrant(grantId, {
      ...(patient ? { patient } : {}),
      ...(launch?.encounter ? { encounter: launch.encounter } : {}),
      fhirUser: `${o.fhirBaseUrl}/Practitioner/${session!.accountId}`,
    });
    await o.provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  });

  return router;
}
