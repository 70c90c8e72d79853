//! Key files: permission checks on read, 0600 atomic creation on write.

use std::path::Path;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use super::KeyError;

/// Logs a warning when a private key file is readable by group or others: the key still loads
/// (refusing would break deployments that mount secrets with wider modes), but the operator hears.
#[cfg(unix)]
pub(super) fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{mode:o}"),
                "private key file is readable by group or others; restrict it with `chmod 600`"
            );
        }
    }
}

#[cfg(not(unix))]
pub(super) fn warn_if_shared(_path: &Path) {}

/// Writes `contents` to `path` with mode 0600, never replacing an existing file unless
/// `overwrite` (then via a temporary file and a rename).
pub(super) fn write_private_file(
    path: &Path,
    contents: &[u8],
    overwrite: bool,
) -> Result<(), KeyError> {
    use std::io::Write as _;
    let io_err = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::FileExists { path: path.clone() }
            } else {
                KeyError::Io {
                    action,
                    path: path.clone(),
                    source,
                }
            }
        }
    };
    if !overwrite {
        // create_new + mode 0600: the file never exists with looser permissions, and a file that
        // appeared since the caller checked is never clobbered.
        let mut file = create_private(path).map_err(io_err("cannot create the key file", path))?;
        let written = file.write_all(contents).and_then(|()| file.sync_all());
        if let Err(source) = written {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(KeyError::Io {
                action: "cannot write the key file",
                path: path.to_path_buf(),
                source,
            });
        }
        return Ok(());
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "key".into());
    let mut tag = [0u8; 6];
    SystemRandom::new()
        .fill(&mut tag)
        .map_err(|_| KeyError::Crypto {
            operation: "reading the system random source",
        })?;
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{name}.{tag}.tmp"));
    let mut file =
        create_private(&tmp).map_err(io_err("cannot create a temporary key file", &tmp))?;
    let result = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io_err("cannot write the temporary key file", &tmp))
        .and_then(|()| {
            std::fs::rename(&tmp, path).map_err(io_err("cannot replace the key file", path))
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}
