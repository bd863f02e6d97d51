/**
 * A throwaway PKI made with openssl at test time (issue 14): a CA, a server
 * certificate for 127.0.0.1 and localhost signed by it, a client certificate
 * for mTLS signed by it, and a second CA that signed nothing of these (the
 * "wrong CA"). Files in a fresh temp directory, removed by cleanup().
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Pki {
  dir: string;
  /** Paths of the PEM files. */
  ca: string;
  otherCa: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  read(path: string): Buffer;
  cleanup(): void;
}

function openssl(dir: string, ...args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
}

function authority(dir: string, name: string): void {
  openssl(dir, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${name}.key`);
  openssl(
    dir,
    ...["req", "-x509", "-new", "-key", `${name}.key`, "-sha256", "-days", "2", "-subj", `/CN=${name}`],
    ...["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
    ...["-out", `${name}.crt`],
  );
}

function leaf(dir: string, name: string, ca: string, ext: string): void {
  openssl(dir, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${name}.key`);
  openssl(dir, "req", "-new", "-key", `${name}.key`, "-subj", `/CN=${name}`, "-out", `${name}.csr`);
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(
    dir,
    ...["x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.crt`, "-CAkey", `${ca}.key`, "-CAcreateserial"],
    ...["-days", "2", "-sha256", "-extfile", `${name}.ext`, "-out", `${name}.crt`],
  );
}

export function makePki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), "sy-pki-"));
  authority(dir, "test-ca");
  authority(dir, "other-ca");
  leaf(
    dir,
    "server",
    "test-ca",
    "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:svc.test\nextendedKeyUsage=serverAuth\n",
  );
  leaf(dir, "switchyard", "test-ca", "extendedKeyUsage=clientAuth\n");
  const at = (f: string) => join(dir, f);
  return {
    dir,
    ca: at("test-ca.crt"),
    otherCa: at("other-ca.crt"),
    serverCert: at("server.crt"),
    serverKey: at("server.key"),
    clientCert: at("switchyard.crt"),
    clientKey: at("switchyard.key"),
    read: (p) => readFileSync(p),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
