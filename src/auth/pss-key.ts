/**
 * fast-jwt (under @fastify/jwt) verifies PS256/384/512 only with an ordinary
 * RSA key (SPKI algorithm rsaEncryption); given an RSA-PSS key (id-RSASSA-PSS,
 * 1.2.840.113549.1.1.10) it refuses to register at all. Both SPKI forms carry
 * the same RSAPublicKey (n, e) in their BIT STRING, so the PSS key is re-read
 * as a plain RSA key; which algorithms it may verify stays pinned from the
 * original (PS* only, narrowed to the hash the key's parameters name).
 */
import { createPublicKey, type KeyObject } from "node:crypto";

/** The key fast-jwt can use: an RSA-PSS key as the rsaEncryption key with the same n and e. */
export function verifiableKey(key: KeyObject): KeyObject {
  if (key.asymmetricKeyType !== "rsa-pss") return key;
  const der = key.export({ type: "spki", format: "der" });
  // SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
  const spki = read(der, 0, 0x30);
  const algorithm = read(der, spki.start, 0x30);
  const bits = read(der, algorithm.end, 0x03);
  // The BIT STRING's first byte counts unused bits (0 for a DER key); the rest is RSAPublicKey.
  return createPublicKey({ key: der.subarray(bits.start + 1, bits.end), format: "der", type: "pkcs1" });
}

/** One DER element at `at` with the expected tag: where its contents start and end. */
export function read(der: Buffer, at: number, tag: number): { start: number; end: number } {
  if (der[at] !== tag) throw new Error(`unexpected DER tag ${der[at]} at ${at}`);
  let len = der[at + 1] ?? 0;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (der[start + i] ?? 0);
    start += n;
  }
  return { start, end: start + len };
}
