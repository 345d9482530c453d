//! What a failed TLS handshake means for an operator, in one line: which certificate is at
//! fault — etcd's server certificate, which distlock checks, or the client certificate, which
//! etcd checks — and why, with the TLS library's own words in parentheses.
//!
//! etcd's answer to a client certificate it does not accept depends on its version: 3.5 sends a
//! TLS alert (`received fatal alert: BadCertificate`), 3.4 finishes the TLS 1.3 handshake and then
//! closes the connection (`operation was canceled`). Neither says why (missing, another CA,
//! expired: the alert is the same), so the validity dates of our own certificate are read here to
//! tell an expired one apart.

use crate::error::Error;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The TLS files distlock was given, to name them in an error.
#[derive(Debug, Default, Clone)]
pub struct Files {
    pub cacert: Option<PathBuf>,
    pub cert: Option<ClientCert>,
}

/// Our client certificate: its file and, when it could be read, its validity period and its
/// subject's Common Name (etcd's user for it when authentication is on and no password is
/// given).
#[derive(Debug, Clone)]
pub struct ClientCert {
    pub path: PathBuf,
    pub valid: Option<(SystemTime, SystemTime)>,
    pub common_name: Option<String>,
}

impl Files {
    pub fn new(cacert: Option<&Path>, cert: Option<&Path>) -> Files {
        Files {
            cacert: cacert.map(Path::to_path_buf),
            cert: cert.map(|path| {
                let der = std::fs::read(path)
                    .ok()
                    .and_then(|pem| CertificateDer::from_pem_slice(&pem).ok());
                let fields = der.as_deref().and_then(fields);
                ClientCert {
                    path: path.to_path_buf(),
                    valid: fields.as_ref().map(|f| f.valid),
                    common_name: fields.and_then(|f| f.common_name),
                }
            }),
        }
    }
}

/// Whether `detail` (an error's innermost cause) is a TLS failure that no retry will mend: a
/// certificate we do not accept, or etcd's refusal of the handshake.
pub fn is_tls_failure(detail: &str) -> bool {
    let lower = detail.to_lowercase();
    lower.contains("certificate")
        || lower.contains("tls private key")
        || lower.contains("received fatal alert")
}

/// The error line for a TLS failure (`detail`, as `is_tls_failure` saw it) of the request
/// `what`, or `None` if `detail` is not one.
pub fn explain(files: &Files, endpoints: &str, what: &str, detail: &str) -> Option<Error> {
    let lower = detail.to_lowercase();
    if lower.contains("invalid peer certificate") {
        let (problem, fix) = server_certificate(files, &lower);
        return Some(Error::Etcd(format!(
            "cannot {what}: etcd's server certificate at {endpoints} {problem} ({detail}); {fix}"
        )));
    }
    let alert = lower.contains("received fatal alert");
    // An alert about a certificate is etcd's verdict on ours (or on its absence); another one
    // (a protocol version or cipher etcd does not speak) is about the handshake itself.
    let about_ours = ["certificate", "unknownca", "accessdenied"]
        .iter()
        .any(|w| lower.contains(w));
    if alert && about_ours {
        return Some(refused_client_certificate(files, endpoints, what, detail));
    }
    if !is_tls_failure(detail) {
        return None;
    }
    let failed = match alert {
        true => format!("etcd at {endpoints} refused the TLS handshake"),
        false => format!("the TLS handshake with etcd at {endpoints} failed"),
    };
    Some(Error::Etcd(format!(
        "cannot {what}: {failed} ({detail}); check --cacert (the CA that signed etcd's server certificate) and --cert/--key"
    )))
}

/// What is wrong with etcd's server certificate, and what to do, from rustls's words
/// (lowercased): `invalid peer certificate: UnknownIssuer`, `… certificate expired: …`,
/// `… certificate not valid for name "…"; …`.
fn server_certificate(files: &Files, lower: &str) -> (String, String) {
    let (problem, fix) = if lower.contains("expired") {
        (
            "has expired",
            "etcd needs a renewed one (or this machine's clock is wrong)",
        )
    } else if lower.contains("not valid yet") || lower.contains("notvalidyet") {
        (
            "is not valid yet",
            "check this machine's clock and etcd's certificate",
        )
    } else if lower.contains("not valid for name") || lower.contains("notvalidforname") {
        (
            "is not made out for the host name or address in the endpoint",
            "use an endpoint that it names, or give etcd a certificate that names this one",
        )
    } else if lower.contains("unknownissuer") || lower.contains("unknown issuer") {
        let problem = match &files.cacert {
            Some(ca) => format!("is not signed by the CA in {}", ca.display()),
            None => "is not signed by a CA among the system's roots (no --cacert was given)".into(),
        };
        return (problem, "give --cacert the CA that signed it".into());
    } else {
        ("was not accepted", "check --cacert (the CA that signed it)")
    };
    (problem.into(), fix.into())
}

/// etcd did not accept our client certificate, or wanted one and got none: the line names the
/// file, and says why when we can tell (expired, not yet valid).
pub fn refused_client_certificate(
    files: &Files,
    endpoints: &str,
    what: &str,
    detail: &str,
) -> Error {
    let Some(cert) = &files.cert else {
        return Error::Etcd(format!(
            "cannot {what}: etcd at {endpoints} requires a client certificate and none was given ({detail}); give --cert and --key, signed by a CA that etcd trusts (its --trusted-ca-file)"
        ));
    };
    let now = SystemTime::now();
    let (why, fix) = match cert.valid {
        Some((_, not_after)) if now > not_after => (
            format!(
                ": it expired at {}",
                humantime::format_rfc3339_seconds(not_after)
            ),
            "renew it",
        ),
        Some((not_before, _)) if now < not_before => (
            format!(
                ": it is not valid before {}",
                humantime::format_rfc3339_seconds(not_before)
            ),
            "check this machine's clock",
        ),
        _ => (
            String::new(),
            "it must be signed by a CA that etcd trusts (its --trusted-ca-file) and allow client authentication",
        ),
    };
    Error::Etcd(format!(
        "cannot {what}: etcd at {endpoints} did not accept the client certificate {}{why} ({detail}); {fix}",
        cert.path.display()
    ))
}

/// What distlock reads of a certificate.
struct Fields {
    /// notBefore, notAfter.
    valid: (SystemTime, SystemTime),
    common_name: Option<String>,
}

/// The validity period and the subject's Common Name of a DER-encoded X.509 certificate;
/// `None` if it cannot be read. Only the fields up to the subject are walked, not checked.
fn fields(der: &[u8]) -> Option<Fields> {
    const SEQUENCE: u8 = 0x30;
    let (_, certificate, _) = element(der).filter(|(tag, ..)| *tag == SEQUENCE)?;
    let (_, tbs, _) = element(certificate).filter(|(tag, ..)| *tag == SEQUENCE)?;
    let mut rest = tbs;
    // [0] version (optional), serialNumber, signature, issuer; then validity and subject.
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2;
    }
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (_, validity, rest) = element(rest).filter(|(tag, ..)| *tag == SEQUENCE)?;
    let (tag, not_before, after) = element(validity)?;
    let not_before = time(tag, not_before)?;
    let (tag, not_after, _) = element(after)?;
    let common_name = element(rest)
        .filter(|(tag, ..)| *tag == SEQUENCE)
        .and_then(|(_, subject, _)| common_name(subject));
    Some(Fields {
        valid: (not_before, time(tag, not_after)?),
        common_name,
    })
}

/// The first Common Name (OID 2.5.4.3) in the contents of a Name: a SEQUENCE of SETs of
/// SEQUENCEs { OID, string }.
fn common_name(mut name: &[u8]) -> Option<String> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    while let Some((_, set, rest)) = element(name) {
        name = rest;
        let mut attributes = set;
        while let Some((_, attribute, rest)) = element(attributes) {
            attributes = rest;
            let (tag, oid, value) = element(attribute)?;
            if tag == 0x06 && oid == CN {
                let (_, text, _) = element(value)?;
                return std::str::from_utf8(text).ok().map(str::to_string);
            }
        }
    }
    None
}

/// One DER element: its tag, its contents and what follows it.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (first as usize, rest),
        0x81..=0x84 => {
            let n = (first & 0x7f) as usize;
            let bytes = rest.get(..n)?;
            let len = bytes.iter().fold(0usize, |len, b| len << 8 | *b as usize);
            (len, &rest[n..])
        }
        _ => return None,
    };
    let contents = rest.get(..len)?;
    Some((tag, contents, &rest[len..]))
}

/// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`), as RFC 5280 writes them.
fn time(tag: u8, text: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    if rest.len() != 10 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let field = |i: usize| rest[i..i + 2].parse::<i64>().ok();
    let (month, day) = (field(0)?, field(2)?);
    let seconds = field(4)? * 3600 + field(6)? * 60 + field(8)?;
    let secs = days_from_civil(year, month, day) * 86_400 + seconds;
    match u64::try_from(secs) {
        Ok(secs) => UNIX_EPOCH.checked_add(Duration::from_secs(secs)),
        Err(_) => UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs())),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{date_time_ymd, CertificateParams, DistinguishedName, DnType, KeyPair};

    fn cert_valid(from: (i32, u8, u8), to: (i32, u8, u8)) -> Vec<u8> {
        let mut params = CertificateParams::new(vec!["etcd".to_string()]).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "distlock");
        params
            .distinguished_name
            .push(DnType::CommonName, "distlock-client");
        params.not_before = date_time_ymd(from.0, from.1, from.2);
        params.not_after = date_time_ymd(to.0, to.1, to.2);
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn reads_the_validity_period_in_both_time_formats() {
        // UTCTime before 2050, GeneralizedTime from 2050 on (RFC 5280).
        let der = cert_valid((2020, 1, 1), (2021, 3, 1));
        let read = fields(&der).unwrap();
        assert_eq!(read.valid, (at(1_577_836_800), at(1_614_556_800)));
        assert_eq!(read.common_name.as_deref(), Some("distlock-client"));
        let der = cert_valid((1999, 12, 31), (2050, 1, 1));
        assert_eq!(
            fields(&der).unwrap().valid,
            (at(946_598_400), at(2_524_608_000))
        );
    }

    #[test]
    fn garbage_has_no_validity() {
        assert!(fields(b"").is_none());
        assert!(fields(&[0x30, 0x82, 0xff]).is_none());
        let der = cert_valid((2020, 1, 1), (2021, 1, 1));
        assert!(fields(&der[..40]).is_none());
    }

    #[test]
    fn the_line_names_the_certificate_at_fault() {
        let files = Files {
            cacert: Some("/etc/ca.pem".into()),
            cert: Some(ClientCert {
                path: "/etc/client.pem".into(),
                valid: Some((at(1_577_836_800), at(1_609_459_200))),
                common_name: None,
            }),
        };
        let line = |detail: &str| {
            explain(&files, "https://e:2379", "grant a lease", detail)
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let expired = line("received fatal alert: BadCertificate");
        assert!(
            expired.contains("/etc/client.pem: it expired at 2021-01-01T00:00:00Z"),
            "{expired}"
        );
        let issuer = line("invalid peer certificate: UnknownIssuer");
        assert!(
            issuer.contains("server certificate") && issuer.contains("/etc/ca.pem"),
            "{issuer}"
        );
        let version = line("received fatal alert: ProtocolVersion");
        assert!(version.contains("refused the TLS handshake"), "{version}");
        assert!(explain(&files, "e", "x", "connection refused").is_none());
        let none = Files::default();
        let missing = refused_client_certificate(&none, "e", "x", "closed").to_string();
        assert!(missing.contains("none was given"), "{missing}");
    }
}
