// The server bundle's stand-in for iconv-lite (scripts/bundle-server.mjs), which express's body-parser loads for
// its charset support: some 540 KB of code and tables that Node would parse at every start, for the JSON bodies the
// server reads, which are UTF-8. This decodes what Node decodes itself (UTF-8, UTF-16LE, Latin-1, ASCII), dropping a
// byte-order mark as iconv-lite does; any other charset is refused (body-parser answers 4xx, never a crash). The
// CLI and the tests run the real body-parser with the real iconv-lite.
'use strict';
const { StringDecoder } = require('node:string_decoder');

const NODE_NAMES = {
  'utf-8': 'utf8', utf8: 'utf8', 'utf-16le': 'utf16le', utf16le: 'utf16le', 'ucs-2': 'utf16le', ucs2: 'utf16le',
  'iso-8859-1': 'latin1', latin1: 'latin1', 'us-ascii': 'ascii', ascii: 'ascii',
};

function nodeName(encoding) {
  const key = String(encoding).toLowerCase();
  const name = Object.hasOwn(NODE_NAMES, key) ? NODE_NAMES[key] : undefined; // never __proto__ and the like
  if (name === undefined) {
    const err = new Error(`unsupported charset "${String(encoding).toUpperCase()}"`);
    err.type = 'charset.unsupported';
    err.charset = String(encoding).toLowerCase();
    throw err;
  }
  return name;
}

const withoutBom = (s) => (s.charCodeAt(0) === 0xfeff ? s.slice(1) : s);

exports.encodingExists = (encoding) => Object.hasOwn(NODE_NAMES, String(encoding).toLowerCase());
exports.decode = (buffer, encoding) => withoutBom(buffer.toString(nodeName(encoding)));
exports.getDecoder = (encoding) => {
  const decoder = new StringDecoder(nodeName(encoding));
  let first = true;
  return {
    write(buffer) {
      const s = decoder.write(buffer);
      if (!first || s === '') return s;
      first = false;
      return withoutBom(s);
    },
    end() {
      return decoder.end() || undefined;
    },
  };
};
