// s3rver (npm) with AWS Signature Version 4 checked on every request, for the S3 store tests.
//
// s3rver 3.7 verifies V2 signatures but accepts any V4 one ("Signature version 4 calculation is
// unimplemeneted" in its authentication middleware), so a wrong secret would pass unnoticed. A
// middleware placed in front of s3rver's own recomputes each request's V4 signature from the
// request as it came over the wire (method, path and query as sent, the signed headers, the
// x-amz-content-sha256 payload hash) with the secret of the access key it names, as AWS
// documents the algorithm, and answers 403 SignatureDoesNotMatch (or InvalidAccessKeyId) when it
// differs. Everything else -- buckets, objects, listings, ranges, ETags -- is s3rver's.
//
// Usage: node s3rver_sigv4.js S3RVER_MODULE_DIR DATA_DIR ADDRESS PORT KEY_ID SECRET BUCKET...
'use strict';

const crypto = require('crypto');
const path = require('path');

const [moduleDir, dataDir, address, port, keyId, secret, ...buckets] = process.argv.slice(2);
if (!moduleDir || !dataDir || !address || !port || !keyId || !secret) {
  console.error('usage: s3rver_sigv4.js S3RVER_MODULE_DIR DATA_DIR ADDRESS PORT KEY_ID SECRET ' +
                'BUCKET...');
  process.exit(2);
}
const S3rver = require(path.join(moduleDir, 's3rver'));
const secrets = new Map([[keyId, secret]]);

// RFC 3986 unreserved characters stay, everything else is %XX of its UTF-8 bytes (upper case).
function awsEncode(s) {
  return Array.from(Buffer.from(s, 'utf8'))
    .map(b => {
      const c = String.fromCharCode(b);
      return /[A-Za-z0-9\-._~]/.test(c) ? c : '%' + b.toString(16).toUpperCase().padStart(2, '0');
    })
    .join('');
}

function canonicalUri(rawPath) {
  return rawPath.split('/').map(seg => awsEncode(decodeURIComponent(seg))).join('/');
}

function canonicalQuery(rawQuery) {
  if (!rawQuery) return '';
  return rawQuery
    .split('&')
    .filter(p => p.length > 0)
    .map(p => {
      const eq = p.indexOf('=');
      const name = eq < 0 ? p : p.slice(0, eq);
      const value = eq < 0 ? '' : p.slice(eq + 1);
      return [awsEncode(decodeURIComponent(name)), awsEncode(decodeURIComponent(value))];
    })
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([n, v]) => `${n}=${v}`)
    .join('&');
}

function hmac(key, data) {
  return crypto.createHmac('sha256', key).update(data, 'utf8').digest();
}

function deny(ctx, status, code, message) {
  ctx.status = status;
  ctx.type = 'application/xml';
  ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code>` +
             `<Message>${message}</Message></Error>`;
}

async function checkSigV4(ctx, next) {
  const auth = ctx.get('authorization');
  const m = /^AWS4-HMAC-SHA256 Credential=([^/,]+)\/(\d{8})\/([^/,]+)\/([^/,]+)\/aws4_request,\s*SignedHeaders=([a-z0-9;\-]+),\s*Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) {
    return deny(ctx, 403, 'AccessDenied', 'Requests must be signed with AWS Signature V4.');
  }
  const [, akid, date, region, service, signedHeaders, signature] = m;
  const key = secrets.get(akid);
  if (key === undefined) {
    return deny(ctx, 403, 'InvalidAccessKeyId',
                'The AWS Access Key Id you provided does not exist in our records.');
  }
  const amzDate = ctx.get('x-amz-date');
  const payloadHash = ctx.get('x-amz-content-sha256');
  if (!amzDate || !payloadHash || !amzDate.startsWith(date)) {
    return deny(ctx, 400, 'InvalidRequest', 'x-amz-date and x-amz-content-sha256 are required.');
  }
  const raw = ctx.req.url; // the request target as sent, before any decoding
  const q = raw.indexOf('?');
  let uri, query;
  try {
    uri = canonicalUri(q < 0 ? raw : raw.slice(0, q));
    query = canonicalQuery(q < 0 ? '' : raw.slice(q + 1));
  } catch (e) {
    return deny(ctx, 400, 'InvalidURI', 'Could not parse the specified URI.');
  }
  const headers = signedHeaders
    .split(';')
    .map(h => `${h}:${String(ctx.req.headers[h] ?? '').trim().replace(/\s+/g, ' ')}\n`)
    .join('');
  const canonical = [ctx.method, uri, query, headers, signedHeaders, payloadHash].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope,
                  crypto.createHash('sha256').update(canonical, 'utf8').digest('hex')].join('\n');
  let k = hmac('AWS4' + key, date);
  k = hmac(k, region);
  k = hmac(k, service);
  k = hmac(k, 'aws4_request');
  const want = crypto.createHmac('sha256', k).update(toSign, 'utf8').digest('hex');
  if (!crypto.timingSafeEqual(Buffer.from(want), Buffer.from(signature))) {
    return deny(ctx, 403, 'SignatureDoesNotMatch',
                'The request signature we calculated does not match the signature you ' +
                'provided. Check your key and signing method.');
  }
  return next();
}

// s3rver's own V4 "check" only looks the key up in its account registry: register ours too.
const AWSAccount = require(path.join(moduleDir, 's3rver', 'lib', 'models', 'account'));
AWSAccount.DUMMY_ACCOUNT.createKeyPair(keyId, secret);

const app = new S3rver({
  address,
  port: Number(port),
  directory: dataDir,
  silent: false,
  configureBuckets: buckets.map(name => ({ name, configs: [] })),
});
// after s3rver's request logger (index 0), before everything else it does
app.middleware.splice(1, 0, checkSigV4);
app.run().then(
  ({ address: a, port: p }) => console.log('s3rver with SigV4 checks listening on %s:%d', a, p),
  err => {
    console.error(err);
    process.exit(1);
  });
