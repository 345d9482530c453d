//! The name of a lock, checked once where it enters (a flag, a variable, a YAML key, a library
//! caller) so that every key built from it is one path segment under the prefix.

use std::fmt;

/// A lock name known to be 1-255 bytes of UTF-8 without `/`, whitespace or control characters.
#[derive(Debug, Clone, PartialEq)]
pub struct LockName(String);

impl LockName {
    pub fn parse(name: &str) -> Result<LockName, String> {
        if name.is_empty() {
            return Err("the lock name is empty".into());
        }
        if name.len() > 255 {
            return Err(format!(
                "the lock name is {} bytes long; at most 255 are allowed",
                name.len()
            ));
        }
        if let Some(c) = name
            .chars()
            .find(|c| *c == '/' || c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "the lock name {name:?} contains {c:?}; '/', whitespace and control characters are not allowed"
            ));
        }
        if name == crate::history::RESERVED {
            return Err(format!(
                "the lock name {name:?} is reserved: distlock keeps its history under it"
            ));
        }
        Ok(LockName(name.to_string()))
    }
}

impl fmt::Display for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names() {
        for good in [
            "percona_prod",
            "a",
            "nightly-backup.v2",
            "ünïcode",
            &"x".repeat(255),
        ] {
            assert!(LockName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a/b",
            "a b",
            "tab\there",
            "nl\n",
            "bell\u{7}",
            ".distlock",
            &"x".repeat(256),
        ] {
            assert!(LockName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
