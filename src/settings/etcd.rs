//! The settings that say how to reach etcd: where (endpoints, prefix), how long to wait for
//! it, TLS and credentials. Part of the settings table (`mod.rs`).

use super::{setting, spec, values, Def, OptionSpec, Yaml};
use std::time::Duration;

pub const ENDPOINTS: Def<Vec<String>> = Def {
    spec: OptionSpec {
        yaml: Yaml::List,
        default: Some("http://127.0.0.1:2379"),
        more: "In this file, a YAML list or one comma-separated string. host:port without a \
               scheme, as etcdctl takes it, is http://, or https:// when cacert, cert or key is \
               given.",
        example: Some(
            "http://etcd1.example.com:2379,http://etcd2.example.com:2379,http://etcd3.example.com:2379",
        ),
        ..setting(
            "endpoints",
            "endpoints",
            "DISTLOCK_ENDPOINTS",
            "URLS",
            "Comma-separated etcd URLs (or host:port); https:// means TLS",
        )
    },
    parse: values::endpoints,
};

pub const PREFIX: Def<String> = Def {
    spec: OptionSpec {
        default: Some("/distlock/"),
        more: "A lock NAME lives under <prefix>NAME/.",
        example: Some("/distlock/prod/"),
        ..setting(
            "prefix",
            "prefix",
            "DISTLOCK_PREFIX",
            "P",
            "Key namespace in etcd, e.g. one for staging and one for prod",
        )
    },
    parse: values::text,
};

pub const MAXTIME: Def<Duration> = Def {
    spec: OptionSpec {
        default: Some("5s"),
        example: Some("5s"),
        ..setting(
            "maxtime",
            "maxtime",
            "DISTLOCK_MAXTIME",
            "T",
            "Deadline for dialing etcd and for each etcd request",
        )
    },
    parse: values::positive_duration,
};

pub const CACERT: Def<String> = Def {
    spec: OptionSpec {
        default_doc: Some("system roots"),
        ..setting(
            "cacert",
            "cacert",
            "DISTLOCK_CACERT",
            "FILE",
            "CA certificate (PEM) to verify etcd's server certificate",
        )
    },
    parse: values::text,
};

pub const CERT: Def<String> = Def {
    spec: setting(
        "cert",
        "cert",
        "DISTLOCK_CERT",
        "FILE",
        "Client certificate (PEM) for mutual TLS",
    ),
    parse: values::text,
};

pub const KEY: Def<String> = Def {
    spec: setting(
        "key",
        "key",
        "DISTLOCK_KEY_FILE",
        "FILE",
        "Client private key (PEM) for mutual TLS. Also DISTLOCK_KEY, etcdctl-style, except \
         under a distlock that set DISTLOCK_KEY (the lock key) itself",
    ),
    parse: values::text,
};

pub const USER: Def<String> = Def {
    spec: setting(
        "user",
        "user",
        "DISTLOCK_USER",
        "NAME",
        "etcd user; the password comes from DISTLOCK_PASSWORD or --password-file, never argv",
    ),
    parse: values::text,
};

pub const PASSWORD_FILE: Def<String> = Def {
    spec: setting(
        "password_file",
        "password-file",
        "DISTLOCK_PASSWORD_FILE",
        "FILE",
        "File whose first line is the etcd password",
    ),
    parse: values::text,
};

pub const PASSWORD: OptionSpec = OptionSpec {
    env: Some("DISTLOCK_PASSWORD"),
    ..spec(
        "password",
        "The etcd password (never a flag: ps would show it); the command does not inherit it",
    )
};
