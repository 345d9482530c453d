//! A private PKI for the TLS tests, made with rcgen (no openssl needed): a CA, a server
//! certificate for 127.0.0.1 and localhost, a client certificate, and a second, unrelated CA
//! with a client certificate of its own.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

use super::scratch_dir;

/// PEM files of one test's PKI: a CA, a server certificate for 127.0.0.1 and localhost signed
/// by it, a client certificate signed by it, and a second, unrelated CA with its own client
/// certificate (what an attacker or a misconfigured host would present).
pub struct Pki {
    dir: TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = scratch_dir();
        let (ca_pem, ca) = new_ca("distlock test CA");
        let (other_pem, other) = new_ca("some other CA");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        };
        write("ca.pem", &ca_pem);
        write("other-ca.pem", &other_pem);
        // etcd 3.4's gRPC gateway dials etcd itself with the server certificate as its client
        // certificate, so the server certificate must be good for both.
        let both = [
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let (cert, key) = new_leaf(&ca, "etcd", &["127.0.0.1", "localhost"], &both);
        write("server.pem", &cert);
        write("server-key.pem", &key);
        let client = [ExtendedKeyUsagePurpose::ClientAuth];
        let (cert, key) = new_leaf(&ca, "distlock-client", &[], &client);
        write("client.pem", &cert);
        write("client-key.pem", &key);
        let (cert, key) = new_leaf(&other, "intruder", &[], &client);
        write("other-client.pem", &cert);
        write("other-client-key.pem", &key);
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    pub fn cert(&self) -> PathBuf {
        self.path("client.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.path("client-key.pem")
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// A certificate and its key (both PEM) for `cn` with the given IP/DNS names, signed by `ca`.
fn new_leaf(
    ca: &Issuer<'static, KeyPair>,
    cn: &str,
    names: &[&str],
    usages: &[ExtendedKeyUsagePurpose],
) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usages.to_vec();
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}
