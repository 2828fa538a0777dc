import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

export interface ServerCert {
  cert: string;
  key: string;
}

/**
 * Certificates for fake HTTPS upstreams, made with openssl in `dir`: a test CA (`dir/ca.crt`) that signs
 * `api.upstream.test` and `plain.upstream.test`, and a rogue CA nobody trusts that signs
 * `forged.upstream.test`.
 */
export function makeUpstreamCerts(dir: string): { brokered: ServerCert; plain: ServerCert; forged: ServerCert } {
  const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  const ca = (name: string, cn: string) =>
    ssl(
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.crt`,
      "-days",
      "2",
      "-subj",
      `/CN=${cn}`,
    );
  ca("ca", "Test Upstream CA");
  ca("rogue", "Rogue CA");
  const leaf = (name: string, signer: string): ServerCert => {
    ssl(
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      `/CN=${name}`,
    );
    writeFileSync(path.join(dir, `${name}.ext`), `subjectAltName=DNS:${name}\n`);
    ssl(
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      `${signer}.crt`,
      "-CAkey",
      `${signer}.key`,
      "-CAcreateserial",
      "-out",
      `${name}.crt`,
      "-days",
      "2",
      "-extfile",
      `${name}.ext`,
    );
    return {
      cert: readFileSync(path.join(dir, `${name}.crt`), "utf8"),
      key: readFileSync(path.join(dir, `${name}.key`), "utf8"),
    };
  };
  return {
    brokered: leaf("api.upstream.test", "ca"),
    plain: leaf("plain.upstream.test", "ca"),
    forged: leaf("forged.upstream.test", "rogue"),
  };
}
