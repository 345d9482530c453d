//! A private PKI for the TLS tests, made with rcgen (no openssl needed): a CA, a server
//! certificate for 127.0.0.1 and localhost, a client certificate, a second, unrelated CA with a
//! client certificate of its own, and the certificates operators get wrong: expired ones and a
//! server certificate for another name.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

use super::scratch_dir;

/// PEM files of one test's PKI: a CA, a server certificate for 127.0.0.1 and localhost signed
/// by it, a client certificate signed by it, and a second, unrelated CA with its own client
/// certificate (what an attacker or a misconfigured host would present). Beside them, signed
/// by the CA: `expired-client`, `expired-server` (valid names, but only during 2020) and
/// `misnamed-server` (for `etcd.invalid` only), each `<name>.pem` with `<name>-key.pem`.
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
        let server_names = ["127.0.0.1", "localhost"];
        let client = [ExtendedKeyUsagePurpose::ClientAuth];
        let leaf = |file: &str, issuer, cn, names: &[&str], usages: &[_], expired| {
            let (cert, key) = new_leaf(issuer, cn, names, usages, expired);
            write(&format!("{file}.pem"), &cert);
            write(&format!("{file}-key.pem"), &key);
        };
        leaf("server", &ca, "etcd", &server_names, &both, false);
        leaf("client", &ca, "distlock-client", &[], &client, false);
        leaf("other-client", &other, "intruder", &[], &client, false);
        leaf("expired-client", &ca, "distlock-client", &[], &client, true);
        leaf("expired-server", &ca, "etcd", &server_names, &both, true);
        leaf(
            "misnamed-server",
            &ca,
            "etcd",
            &["etcd.invalid"],
            &both,
            false,
        );
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

/// A certificate and its key (both PEM) for `cn` with the given IP/DNS names, signed by `ca`;
/// if `expired`, valid only during 2020.
fn new_leaf(
    ca: &Issuer<'static, KeyPair>,
    cn: &str,
    names: &[&str],
    usages: &[ExtendedKeyUsagePurpose],
    expired: bool,
) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    if expired {
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2021, 1, 1);
    }
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
