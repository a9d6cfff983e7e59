/** The sandbox's backend clients: a JWKS is registered only when it is public and fits SMART. */
import { generateKeyPairSync } from 'node:crypto';
import { BackendClients, JwksProblem, validatePublicJwks } from '../../src/sandbox/backend-clients.js';

const ec = () => generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'jwk' });

test('private key material is refused, with what to paste instead', () => {
  const err = (() => { try { validatePublicJwks({ keys: [{ ...ec(), kid: 'k1' }] }); } catch (e) { return e; } })();
  expect(err).toBeInstanceOf(JwksProblem);
  expect((err as JwksProblem).problems[0]).toMatch(/keys\[0\] \(kid k1\): contains private key material \(d\); register the public JWKS only/);
});

test('keys that do not fit SMART are refused: P-256, small RSA, no kid, another alg', () => {
  const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });
  const rsa1024 = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' });
  const { d: _d, ...pub } = ec();
  expect(() => validatePublicJwks({ keys: [{ ...p256, kid: 'a' }, { ...rsa1024, kid: 'b' }, { ...pub }, { ...pub, kid: 'c', alg: 'ES256' }] })).toThrow(
    /keys\[0\] \(kid a\): EC keys must be on P-384.*keys\[1\] \(kid b\): RSA key of 1024 bits.*keys\[2\]: needs a kid.*keys\[3\] \(kid c\): alg ES256/,
  );
});

test('a registered client gets client_credentials + private_key_jwt metadata with the public keys only; ids are unique', async () => {
  const { d: _d, ...pub } = ec();
  const clients = new BackendClients({ keysDir: undefined, isTaken: (id) => id === 'launch-app' });
  const { clientId } = clients.register({ jwks: { keys: [{ ...pub, kid: 'k1' }] } });
  expect(clientId).toMatch(/^backend-[0-9a-f]{12}$/);
  const m = await clients.metadataFor(clientId);
  expect(m).toMatchObject({ client_id: clientId, token_endpoint_auth_method: 'private_key_jwt', grant_types: ['client_credentials'], jwks: { keys: [{ kid: 'k1', alg: 'ES384', crv: 'P-384' }] } });
  expect(JSON.stringify(m)).not.toContain('"d"');
  expect(() => clients.register({ clientId: 'launch-app', jwks: { keys: [{ ...pub, kid: 'k1' }] } })).toThrow(/client id launch-app is taken/);
  expect(() => clients.register({ clientId: 'sandbox-backend', jwks: { keys: [{ ...pub, kid: 'k1' }] } })).toThrow(/taken/);
});
