//! The installation's secret for the draw and the keyed hashes (R5, R12): created once, never
//! overwritten, 0600, so nobody can pick call ids that get recorded, and the DPO who holds it can
//! replay any decision. Every audit line that depends on it names it by its key id.
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The secret's length in bytes.
pub const LEN: usize = 32;

/// Reads the secret, or creates it when there is none. A file that cannot be read, or is too
/// short, is never replaced: the module declines to load with the reason (past decisions could
/// no longer be replayed, and exempt numbers' hashes would no longer link).
pub fn load_or_create(path: &Path) -> Result<Vec<u8>, String> {
    match std::fs::read(path) {
        Ok(s) if s.len() >= LEN => {
            let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0o600);
            if mode & 0o077 != 0 {
                log::warn!("callconsent: {} was readable by others (mode {mode:o}): set to 0600", path.display());
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| format!("{}: cannot set mode 0600: {e}", path.display()))?;
            }
            Ok(s)
        }
        Ok(s) => Err(format!(
            "{}: the installation secret is damaged ({} bytes, {LEN} expected); restore it from a backup, or remove it to start a new one (past selections can then no longer be replayed)",
            path.display(),
            s.len()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path),
        Err(e) => Err(format!("{}: the installation secret cannot be read: {e}", path.display())),
    }
}

/// Temporary file, fsync, then a hard link to the final name (which fails rather than replace a
/// file that appeared meanwhile), then the directory is synced: a crash leaves no half key.
fn create(path: &Path) -> Result<Vec<u8>, String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut key = vec![0u8; LEN];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(&key).and_then(|_| f.sync_all()).map_err(err)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        // Another process made it first: use that one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return load_or_create(path),
        Err(e) => return Err(err(e)),
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    log::info!(
        "callconsent: created the installation secret {} (key id {})",
        path.display(),
        callconsent_core::policy::key_id(&key)
    );
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("cc-secret-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_secret_is_made_once_and_private() {
        let d = dir("made");
        let p = d.join("secret");
        let a = load_or_create(&p).unwrap();
        assert_eq!(a.len(), LEN);
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_or_create(&p).unwrap(), a);
        // A mode opened by hand is closed again at the next load.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load_or_create(&p).unwrap(), a);
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1, "no temporary file is left");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_damaged_secret_is_never_replaced() {
        let d = dir("short");
        let p = d.join("secret");
        std::fs::write(&p, b"short").unwrap();
        let e = load_or_create(&p).unwrap_err();
        assert!(e.contains("damaged (5 bytes"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"short");
        let _ = std::fs::remove_dir_all(&d);
    }
}
