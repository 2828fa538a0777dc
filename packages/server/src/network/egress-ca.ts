import { generateKeyPairSync, randomBytes } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import tls from "node:tls";
import forge from "node-forge";

interface OrgCa {
  certPem: string;
  cert: forge.pki.Certificate;
  key: forge.pki.rsa.PrivateKey;
  /** One key for every leaf certificate of the organisation (a key per name would cost ~50 ms each). */
  leafKey: forge.pki.rsa.PrivateKey;
  leafKeyPem: string;
}

const CA_YEARS = 10;
const LEAF_DAYS = 30;

function rsaKeyPair() {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  return {
    privatePem: privateKey.export({ type: "pkcs1", format: "pem" }).toString(),
    publicPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
  };
}

function serial(): string {
  // Positive 128-bit serial.
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return bytes.toString("hex");
}

/**
 * The certificate authorities of the egress broker: one per organisation, generated on first use and
 * kept in the data directory (the private key never leaves the server). Sandboxes trust their
 * organisation's CA; the broker presents leaf certificates it signs for the domains it intercepts.
 */
export class EgressCa {
  private readonly cas = new Map<string, Promise<OrgCa>>();
  private readonly contexts = new Map<string, tls.SecureContext>();

  constructor(private readonly dir: string) {}

  /** The organisation's CA certificate (PEM), for the sandbox's trust stores. */
  async certificatePem(orgId: string): Promise<string> {
    return (await this.ca(orgId)).certPem;
  }

  /** A TLS context presenting a certificate for `name` signed by the organisation's CA (cached). */
  async contextFor(orgId: string, name: string): Promise<tls.SecureContext> {
    const key = `${orgId}/${name}`;
    const cached = this.contexts.get(key);
    if (cached) return cached;
    const ca = await this.ca(orgId);
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.setRsaPublicKey(ca.leafKey.n, ca.leafKey.e);
    cert.serialNumber = serial();
    cert.validity.notBefore = new Date(Date.now() - 60_000);
    cert.validity.notAfter = new Date(Date.now() + LEAF_DAYS * 86_400_000);
    cert.setSubject([{ name: "commonName", value: name }]);
    cert.setIssuer(ca.cert.subject.attributes);
    cert.setExtensions([
      { name: "basicConstraints", cA: false },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true },
      { name: "extKeyUsage", serverAuth: true },
      { name: "subjectAltName", altNames: [{ type: 2, value: name }] },
      // Strict verifiers (Python 3.13, OpenSSL's X509_STRICT) want both key identifiers.
      { name: "subjectKeyIdentifier" },
      { name: "authorityKeyIdentifier", keyIdentifier: ca.cert.generateSubjectKeyIdentifier().getBytes() },
    ]);
    cert.sign(ca.key, forge.md.sha256.create());
    const context = tls.createSecureContext({
      key: ca.leafKeyPem,
      cert: `${forge.pki.certificateToPem(cert)}${ca.certPem}`,
    });
    if (this.contexts.size > 10_000) this.contexts.clear();
    this.contexts.set(key, context);
    return context;
  }

  private ca(orgId: string): Promise<OrgCa> {
    let ca = this.cas.get(orgId);
    if (!ca) {
      ca = this.loadOrCreate(orgId);
      ca.catch(() => this.cas.delete(orgId));
      this.cas.set(orgId, ca);
    }
    return ca;
  }

  private async loadOrCreate(orgId: string): Promise<OrgCa> {
    const base = path.join(this.dir, orgId.replace(/[^A-Za-z0-9_-]/g, "_"));
    let stored: { certPem: string; keyPem: string; leafKeyPem: string } | undefined;
    try {
      stored = JSON.parse(await readFile(`${base}.json`, "utf8")) as typeof stored;
    } catch {
      stored = undefined;
    }
    if (!stored) {
      const caKeys = rsaKeyPair();
      const leaf = rsaKeyPair();
      const cert = forge.pki.createCertificate();
      cert.publicKey = forge.pki.publicKeyFromPem(caKeys.publicPem);
      cert.serialNumber = serial();
      cert.validity.notBefore = new Date(Date.now() - 60_000);
      cert.validity.notAfter = new Date(Date.now() + CA_YEARS * 365 * 86_400_000);
      const subject = [
        { name: "commonName", value: `Sandpit egress CA (${orgId})` },
        { name: "organizationName", value: "Sandpit" },
      ];
      cert.setSubject(subject);
      cert.setIssuer(subject);
      cert.setExtensions([
        { name: "basicConstraints", cA: true, critical: true },
        { name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true },
        { name: "subjectKeyIdentifier" },
      ]);
      cert.sign(forge.pki.privateKeyFromPem(caKeys.privatePem) as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
      stored = { certPem: forge.pki.certificateToPem(cert), keyPem: caKeys.privatePem, leafKeyPem: leaf.privatePem };
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      await writeFile(`${base}.json.tmp`, JSON.stringify(stored), { mode: 0o600 });
      await rename(`${base}.json.tmp`, `${base}.json`);
    }
    return {
      certPem: stored.certPem,
      cert: forge.pki.certificateFromPem(stored.certPem),
      key: forge.pki.privateKeyFromPem(stored.keyPem) as forge.pki.rsa.PrivateKey,
      leafKey: forge.pki.privateKeyFromPem(stored.leafKeyPem) as forge.pki.rsa.PrivateKey,
      leafKeyPem: stored.leafKeyPem,
    };
  }
}
