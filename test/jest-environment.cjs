/**
 * Jest's node environment, with one fix: `structuredClone` comes from the host realm, so the objects it returns
 * have the host's `Object` as constructor. Libraries that test `value.constructor === Object` (oidc-provider
 * validates client JWKS that way after cloning its configuration) then reject them inside Jest's VM context,
 * though the same code works in a plain Node process. This clones with the host function and rebuilds plain
 * objects and arrays in the test's realm.
 */
const { TestEnvironment } = require('jest-environment-node');

class RealmSafeEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    const hostClone = this.global.structuredClone;
    this.global.structuredClone = this.global.eval(`(function (hostClone) {
      function adopt(v) {
        if (Array.isArray(v)) return Array.from(v, adopt);
        if (v !== null && typeof v === 'object') {
          const proto = Object.getPrototypeOf(v);
          if (proto === null || (proto.constructor && proto.constructor.name === 'Object' && Object.getPrototypeOf(proto) === null)) {
            const out = {};
            for (const k of Object.keys(v)) out[k] = adopt(v[k]);
            return out;
          }
        }
        return v;
      }
      return function structuredClone(value, options) { return adopt(hostClone(value, options)); };
    })`)(hostClone);
  }
}

module.exports = RealmSafeEnvironment;
