// The server bundle's stand-in for zod's locales index (scripts/bundle-server.mjs): zod's 60-odd message
// locales are some 360 KB that Node would parse at every start. The server speaks English only, zod's default,
// which zod sets up from its own `locales/en.js` whatever this exports; `z.locales` has English alone.
export { default as en } from '../../node_modules/zod/v4/locales/en.js';
