//! The installation's secret for the draw and the keyed hashes (R5, R12): created at first load,
//! 0600, so nobody can pick call ids that get recorded, and the DPO who holds it can replay any
//! decision.
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub fn load_or_create(path: &Path) -> Result<Vec<u8>, String> {
    if let Ok(s) = std::fs::read(path) {
        if s.len() >= 32 {
            return Ok(s);
        }
    }
    let mut key = vec![0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut key)).map_err(|e| format!("/dev/urandom: {e}"))?;
    let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(&key).and_then(|_| f.sync_all()).map_err(|e| format!("{}: {e}", path.display()))?;
    log::info!("callconsent: created the installation secret {}", path.display());
    Ok(key)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_secret_is_made_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("cc-secret-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("secret");
        let a = super::load_or_create(&p).unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(super::load_or_create(&p).unwrap(), a);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
