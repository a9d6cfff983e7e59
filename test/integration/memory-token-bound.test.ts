/**
 * The in-memory token store holds every context of every session the in-memory session store can hold
 * (MEMORY_SESSIONS_MAX × MAX_CONTEXTS_PER_SESSION), and a token set pushed out when it is full anyway is revoked
 * (context.ended, reason memory_full), never forgotten with its tokens still valid at the EHR.
 */
import { startBff } from '../helpers/bff.js';
import { MEMORY_SESSIONS_MAX } from '../../src/session/session-middleware.js';
import type { TokenSet } from '../../src/session/token-store.js';

const set = (n: number): TokenSet => ({ accessToken: `at-${n}`, refreshToken: `rt-${n}`, tokenType: 'Bearer', fhirBaseUrl: 'https://ehr.example/fhir', registration: 'default' });

test('the memory token store is sized for every session\'s contexts; the one pushed out past that is revoked, not forgotten', async () => {
  const b = await startBff({ SMART_ISS: 'https://ehr.example/fhir', SMART_CLIENT_ID: 'app', MAX_CONTEXTS_PER_SESSION: '2' });
  try {
    const store = b.app.locals.smart.tokenStore;
    const capacity = MEMORY_SESSIONS_MAX * 2;
    for (let i = 0; i < capacity; i++) await store.set(`ctx-${i}`, set(i), 600);
    expect(b.logs.find('tokens.memory_full')).toHaveLength(0); // every context of every session fits
    expect(await store.get('ctx-0')).toEqual(set(0));
    await store.set('one-more', set(-1), 600); // ctx-1 is now the least recently used
    expect(await store.get('ctx-1')).toBeUndefined();
    expect(b.logs.find('tokens.memory_full').map((r) => r.contextId)).toEqual(['ctx-1']);
    await b.app.locals.smart.endings.settled(5000);
    const ended = b.logs.find('context.ended').filter((r) => r.contextId === 'ctx-1');
    expect(ended).toHaveLength(1);
    expect(ended[0]).toMatchObject({ reason: 'memory_full' });
    expect(b.logs.text()).not.toContain('at-1"');
  } finally {
    await b.close();
  }
});
