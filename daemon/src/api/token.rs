//! The API's bearer token (APIトークン): 32 random bytes, hex, in a file readable only by the
//! service user (mode 0600), made on first start and kept across restarts.
//!
//! Made whole under a temporary name and linked into place, so a crash never leaves a
//! half-written token and two starters never overwrite each other's.

use std::io::Write;
use std::path::Path;

use rand::RngCore;

/// Reads the token in `path`, making it first when there is none.
pub fn ensure(path: &Path) -> std::io::Result<String> {
    match read(path) {
        Ok(t) => return Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "token".into()),
        std::process::id()
    ));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp)?;
        f.write_all(token.as_bytes())?;
        f.sync_all()?;
    }
    // hard_link fails if another starter won the race: then theirs is the token.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(path),
        Err(e) => Err(e),
    }
}

/// Reads an existing token.
pub fn read(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    let token = text.trim().to_string();
    if token.len() < 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the token file does not hold a token",
        ));
    }
    Ok(token)
}

/// The daemon's proof that it holds `token`, for a client's `nonce` (本人性の証明): hex of
/// HMAC-SHA-256 keyed by the token. A client checks it before it sends the token or a PIN,
/// so a program squatting on the API's port while tsunagid is down learns neither; the
/// proof reveals nothing of the token.
pub fn proof(token: &str, nonce: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    // HMAC takes a key of any length: new_from_slice cannot fail.
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()) else {
        return String::new();
    };
    mac.update(b"tsunagid-identity\0");
    mac.update(nonce);
    hex::encode(mac.finalize().into_bytes())
}

/// Compares a presented token with the real one in time independent of where they differ.
pub fn matches(presented: &str, real: &str) -> bool {
    let (a, b) = (presented.as_bytes(), real.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.token");
        let first = ensure(&path).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(ensure(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches(&first, &first));
        assert!(!matches(&first[1..], &first));
        let mut other = first.clone().into_bytes();
        other[10] = if other[10] == b'0' { b'1' } else { b'0' };
        assert!(!matches(std::str::from_utf8(&other).unwrap(), &first));
        std::fs::write(&path, "short").unwrap();
        assert!(ensure(&path).is_err());
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
