/** `GET /api/session`: what the page may know about its launch. Never a token. */
import type { Request, Response } from 'express';
import type { SmartDeps } from '../smart/deps.js';
import { selectContext } from '../session/contexts.js';

export function sessionInfoHandler(deps: SmartDeps) {
  return async function sessionInfo(req: Request, res: Response): Promise<void> {
    const ctx = selectContext(req);
    const tokens = await deps.tokenStore.get(ctx.id);
    const idleEnds = Date.now() + deps.config.sessionIdleSeconds * 1000;
    const absoluteEnds = (req.session.createdAt ?? Date.now()) + deps.config.sessionAbsoluteSeconds * 1000;
    const cookieExpires = new Date(Math.min(idleEnds, absoluteEnds));
    res.setHeader('Cache-Control', 'no-store');
    res.json({
      context: ctx.id,
      launch_mode: ctx.mode,
      iss: ctx.iss,
      fhir_base: '/fhir',
      patient: ctx.patient ?? null,
      encounter: ctx.encounter ?? null,
      fhirUser: ctx.fhirUser ?? null,
      need_patient_banner: ctx.needPatientBanner ?? false,
      smart_style_url: ctx.smartStyleUrl ?? null,
      fhirContext: ctx.fhirContext ?? [],
      tenant: ctx.tenant ?? null,
      intent: ctx.intent ?? null,
      scopes: { requested: ctx.scopesRequested, granted: ctx.scopesGranted },
      requested_scopes: ctx.scopesRequested.join(' '),
      granted_scopes: ctx.scopesGranted.join(' '),
      expires_at: tokens?.expiresAt ? new Date(tokens.expiresAt).toISOString() : null,
      refreshable: Boolean(tokens?.refreshToken),
      active: Boolean(tokens),
      session_expires_at: cookieExpires.toISOString(),
      contexts: Object.values(req.session.contexts ?? {}).map((c) => ({ id: c.id, patient: c.patient ?? null, iss: c.iss, created_at: new Date(c.createdAt).toISOString() })),
    });
  };
}
