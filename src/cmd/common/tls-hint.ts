/**
 * What to do when a broker's certificate was not trusted: the TLS error alone ("self-signed
 * certificate in certificate chain") does not say which setting fixes it.
 */

/** Node's verification errors that a CA of one's own fixes. */
const UNTRUSTED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
]);

/** "" unless `err` (or one of its causes) is an untrusted broker certificate; then the fix, to append. */
export function untrustedCertificateHint(err: unknown): string {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (UNTRUSTED.has(String((e as NodeJS.ErrnoException).code))) {
      return ": the broker's certificate is not signed by a trusted CA; set AMQP_TLS_CA_FILE (amqp.tls.caFile) to the CA that signed it";
    }
  }
  return '';
}
